"""The pages' study catalogue (``app.services.studies``) on both databases: the study list's
searches, orders and pages through the QIDO engine, a study's overview, a report's text."""

import random
from datetime import date

import pytest
from pydicom.uid import generate_uid

from app.dicom.query import Resource, StudyRestriction, parse_qido
from app.dicom.target import Target
from app.errors import BadRequest, Gone, NotFound
from app.services.container import Services
from app.services.studies import StudySearch
from tests.factories import make_instance, make_pdf_dataset, make_sr_dataset, to_bytes
from tests.ingested import store

BASE = "http://t/dicom-web"


async def _study(services: Services, **attributes: object) -> str:
    study = generate_uid()
    await store(services, make_instance(StudyInstanceUID=study, **attributes))
    return study


@pytest.mark.parametrize(
    ("key", "attribute"),
    [
        ("PatientName", "PatientName"),
        ("PatientID", "PatientID"),
        ("AccessionNumber", "AccessionNumber"),
        ("StudyDescription", "StudyDescription"),
        ("StudyDate", "StudyDate"),
    ],
)
async def test_every_order_and_its_pages(services: Services, key: str, attribute: str) -> None:
    values = {
        "PatientName": [f"Name{n:02d}^X" for n in range(30)],
        "PatientID": [f"ID-{n:02d}" for n in range(30)],
        "AccessionNumber": [f"A{n:02d}" for n in range(30)],
        "StudyDescription": [f"DESC {n:02d}" for n in range(30)],
        "StudyDate": [f"2024{n // 28 + 1:02d}{n % 28 + 1:02d}" for n in range(30)],
    }[attribute]
    shuffled = random.Random(3).sample(values, len(values))
    uids = {value: await _study(services, **{attribute: value}) for value in shuffled}
    ascending = [uids[v] for v in sorted(values)]
    catalog = services.studies
    for descending, expected in ((False, ascending), (True, ascending[::-1])):
        pages = []
        for page in (1, 2, 3):
            search = StudySearch(sort=key, descending=descending, page=page, page_size=25)
            found = await catalog.studies(search, BASE)
            pages.append([r.study_uid for r in found.rows])
            assert found.total == 30
        # the order goes on from page to page
        assert pages[0] + pages[1] == expected
        assert pages[2] == []


async def test_searches_match_as_the_pages_say(services: Services) -> None:
    knee = await _study(
        services,
        PatientName="Müller^Jürgen",
        PatientID="mrn-ABC-1",
        AccessionNumber="acc-77",
        StudyDescription="MR Knee Left",
        StudyDate="20240320",
        Modality="MR",
    )
    chest = await _study(services, StudyDescription="CT CHEST", StudyDate="20230101")
    catalog = services.studies

    async def found(**fields: object) -> list[str]:
        return [r.study_uid for r in (await catalog.studies(StudySearch(**fields), BASE)).rows]  # type: ignore[arg-type]

    assert await found(patient_name="jurgen mul") == [knee]
    assert await found(patient_id="abc") == [knee]  # contains, any case
    assert await found(accession="ACC-7") == [knee]
    assert await found(description="knee") == [knee]
    assert await found(description="KNEE LEFT") == [knee]
    assert await found(description="chest") == [chest]
    assert await found(description="' OR 1=1 --") == []  # a value, never SQL
    assert await found(description="100%") == []  # % and _ are no wildcards here
    assert await found(modality="mr") == [knee]
    assert await found(date_from=date(2024, 1, 1)) == [knee]
    assert await found(date_to=date(2023, 12, 31)) == [chest]
    # a grant restricts the list as it restricts QIDO
    grant = StudyRestriction(study_uids=frozenset({chest}))
    restricted = await catalog.studies(StudySearch(), BASE, restrict=grant)
    assert [r.study_uid for r in restricted.rows] == [chest]
    for bad in (
        StudySearch(date_from=date(2024, 2, 1), date_to=date(2024, 1, 1)),
        StudySearch(page=0),
        StudySearch(page_size=10),
        StudySearch(sort="PatientSex"),
        StudySearch(patient_id="a\\b"),
        StudySearch(modality="C T"),
    ):
        with pytest.raises(BadRequest):
            await catalog.studies(bad, BASE)


async def test_overview_reports_and_absence(services: Services) -> None:
    study, images, report_series, pdf_series = (generate_uid() for _ in range(4))
    patient = {"PatientName": "Doe^Jane", "PatientID": "P-1"}
    sr = make_sr_dataset(
        "Final report",
        ["Normal study."],
        StudyInstanceUID=study,
        SeriesInstanceUID=report_series,
        **patient,
    )
    await store(
        services,
        *[
            make_instance(
                StudyInstanceUID=study, SeriesInstanceUID=images, InstanceNumber=n, **patient
            )
            for n in (1, 2)
        ]
        + [
            to_bytes(sr),
            to_bytes(
                make_pdf_dataset(
                    b"%PDF-1.4\n%%EOF",
                    StudyInstanceUID=study,
                    SeriesInstanceUID=pdf_series,
                    **patient,
                )
            ),
        ],
    )
    overview = await services.studies.overview(study, BASE)
    assert overview.study.patient_name == "Doe, Jane"
    assert overview.study.instances == 4
    assert {s.series_uid: s.reports_only for s in overview.series} == {
        images: False,
        report_series: True,
        pdf_series: True,
    }
    assert [s.series_uid for s in overview.images] == [images]
    assert sorted(r.kind for r in overview.reports) == ["pdf", "sr"]
    sr_report = next(r for r in overview.reports if r.kind == "sr")
    text = await services.studies.report_text(
        Target(study, sr_report.series_uid, sr_report.sop_uid)
    )
    assert "Final report" in text
    assert "Normal study." in text
    # an image is no report; an unknown study is 404; one outside the grant too; a deleted
    # one 410
    hits = await services.query.search(
        parse_qido([], resource=Resource.SERIES_INSTANCES, study_uid=study, series_uid=images),
        BASE,
    )
    sop = hits.items[0]["00080018"]["Value"][0]
    with pytest.raises(NotFound):
        await services.studies.report_text(Target(study, images, sop))
    with pytest.raises(NotFound):
        await services.studies.overview(generate_uid(), BASE)
    outside = StudyRestriction(study_uids=frozenset({generate_uid()}))
    with pytest.raises(NotFound):
        await services.studies.overview(study, BASE, restrict=outside)
    await services.delete.delete(Target(study))
    with pytest.raises(Gone):
        await services.studies.overview(study, BASE)
