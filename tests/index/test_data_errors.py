"""Which database errors a written value causes (``app.index.db.is_data_error``), on both."""

from sqlalchemy import text

from app.index.db import Database, is_data_error

_STUDY = "INSERT INTO study (study_uid, {column}, attrs_json) VALUES (:uid, :value, '')"


async def _error(db: Database, sql: str, **values: object) -> BaseException | None:
    """What writing ``sql`` raises (None: the database took it)."""
    try:
        async with db.write() as conn:
            await conn.execute(text(sql), values)
    except Exception as exc:
        return exc
    return None


def _data(error: BaseException | None) -> bool | None:
    """Whether ``error`` is a data error (None: there was no error)."""
    return None if error is None else is_data_error(error)


async def test_values_beyond_the_columns_are_data_errors(db: Database) -> None:
    beyond = await _error(db, _STUDY.format(column="num_series"), uid="1.1", value=2**63)
    assert _data(beyond) is True
    nul = await _error(db, _STUDY.format(column="patient_id"), uid="1.2", value="a\x00b")
    long = await _error(db, _STUDY.format(column="timezone_offset"), uid="1.3", value="+" * 17)
    # SQLite keeps both
    expected = None if db.is_sqlite else True
    assert (_data(nul), _data(long)) == (expected, expected)


async def test_races_and_other_failures_are_not(db: Database) -> None:
    assert await _error(db, _STUDY.format(column="patient_id"), uid="1.4", value="P") is None
    # a unique key another row holds
    again = await _error(db, _STUDY.format(column="patient_id"), uid="1.4", value="P")
    assert _data(again) is False
    # a parent a DELETE removed
    orphan = await _error(
        db, "INSERT INTO series (series_uid, study_id, attrs_json) VALUES ('1.5', 999999, '')"
    )
    assert _data(orphan) is False
    assert _data(await _error(db, "SELECT * FROM no_such_table")) is False
    assert _data(OSError("connection reset")) is False
