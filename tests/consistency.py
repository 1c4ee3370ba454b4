"""Index invariants the DELETE tests check: stored counts equal a recount."""

from sqlalchemy import func, select

from app.index.db import Database
from app.index.models import Instance, Series, Study


async def count_drift(db: Database) -> list[str]:
    """Every study or series whose stored counts differ from a recount, and every empty one."""
    problems: list[str] = []
    async with db.read() as conn:
        series_counts = dict(
            (
                await conn.execute(
                    select(Instance.series_id, func.count()).group_by(Instance.series_id)
                )
            ).all()
        )
        study_instances = dict(
            (
                await conn.execute(
                    select(Instance.study_id, func.count()).group_by(Instance.study_id)
                )
            ).all()
        )
        study_series = dict(
            (
                await conn.execute(select(Series.study_id, func.count()).group_by(Series.study_id))
            ).all()
        )
        for row in await conn.execute(select(Series.id, Series.series_uid, Series.num_instances)):
            actual = series_counts.get(row.id, 0)
            if actual == 0:
                problems.append(f"series {row.series_uid} is empty")
            if row.num_instances != actual:
                problems.append(
                    f"series {row.series_uid}: num_instances {row.num_instances} != {actual}"
                )
        for study in await conn.execute(
            select(Study.id, Study.study_uid, Study.num_series, Study.num_instances)
        ):
            n_series = study_series.get(study.id, 0)
            n_instances = study_instances.get(study.id, 0)
            if n_series == 0:
                problems.append(f"study {study.study_uid} is empty")
            if (study.num_series, study.num_instances) != (n_series, n_instances):
                problems.append(
                    f"study {study.study_uid}: counts {(study.num_series, study.num_instances)} "
                    f"!= {(n_series, n_instances)}"
                )
    return problems
