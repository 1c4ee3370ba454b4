"""QueryService.find (a C-FIND's search: every page, no count) and the patient level, on
PostgreSQL and SQLite."""

from typing import Any

from pydicom.uid import generate_uid

from app.dicom.attributes import Level
from app.dicom.query import Query, Resource, Single, StudyRestriction, Wildcard
from app.services.container import Services
from tests.factories import make_instance
from tests.ingested import store


def _value(obj: dict[str, Any], tag: str) -> Any:
    return obj[tag].get("Value", [None])[0]


async def test_find_reads_every_page(services: Services) -> None:
    """Page after page until a short one: 7 instances in pages of 3 come in stable order."""
    study, series = str(generate_uid()), str(generate_uid())
    await store(
        services,
        *(
            make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=n)
            for n in range(7)
        ),
    )
    query = Query(
        level=Level.INSTANCE,
        filters={"StudyInstanceUID": Single(study)},
        resource=Resource.INSTANCES,
    )
    objects = [o async for o in services.query.find(query, "http://h", page_size=3)]
    numbers = [_value(o, "00200013") for o in objects]
    assert sorted(numbers) == list(range(7))
    assert len({_value(o, "00080018") for o in objects}) == 7
    # pages of exactly the count: the last page is empty
    assert len([o async for o in services.query.find(query, "http://h", page_size=7)]) == 7


async def test_patient_level(services: Services) -> None:
    """A patient is its latest study's patient attributes and the patient's counts; patient
    keys match, a study restriction applies."""
    first, second, other = (str(generate_uid()) for _ in range(3))
    await store(
        services,
        make_instance(PatientID="P1", PatientName="Doe^Jane", StudyInstanceUID=first),
        make_instance(PatientID="P1", PatientName="Doe^Jane", StudyInstanceUID=first),
        make_instance(PatientID="P1", PatientName="Doe^Jane", StudyInstanceUID=second),
        make_instance(PatientID="P2", PatientName="Roe^Richard", StudyInstanceUID=other),
    )
    query = Query(
        level=Level.PATIENT,
        filters={"PatientName": Wildcard("*OE*")},
        include=frozenset({0x00100010, 0x00100020}),
        resource=Resource.PATIENTS,
    )
    patients = [o async for o in services.query.find(query, "")]
    by_id = {_value(p, "00100020"): p for p in patients}
    assert set(by_id) == {"P1", "P2"}
    doe = by_id["P1"]
    assert _value(doe, "00100010") == {"Alphabetic": "Doe^Jane"}
    # (each instance is in a series of its own)
    counts = (_value(doe, "00201200"), _value(doe, "00201202"), _value(doe, "00201204"))
    assert counts == (2, 3, 3)
    assert "00080020" not in doe  # a study attribute is not a patient's
    results = await services.query.search(query, "")
    assert results.total == 2
    only = StudyRestriction(study_uids=frozenset({second}))
    [restricted] = [o async for o in services.query.find(query, "", restrict=only)]
    assert _value(restricted, "00201200") == 1
