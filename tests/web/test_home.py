"""The study browser at ``/`` (issue 22, point 2): the newest studies, a POSTed search through
the QIDO engine, sorting, paging with the total, escaping, audit, permissions."""

from pathlib import Path

from app.services.audit import AuditFilter
from tests.auth.helpers import auth_settings
from tests.web.archive import store_study, study_links, text_of
from tests.web.helpers import csrf_header, signed_in, web_client
from tests.web.test_headers import inline_code

HTMX = {"HX-Request": "true"}


async def test_the_list_shows_the_newest_studies_first_with_the_total(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        old = await store_study(http, settings, StudyDate="20200101", PatientName="Old^Anna")
        new = await store_study(http, settings, StudyDate="20250301", PatientName="New^Ben")
        mid = await store_study(
            http, settings, instances=3, StudyDate="20230615", PatientName="Mid^Carl"
        )
        await signed_in(http, services, permissions=["read"])
        page = await http.get("/")
        assert page.status_code == 200
        assert study_links(page.text) == [new, mid, old]
        text = text_of(page.text)
        assert "Studies 1\u20133 of 3" in text
        assert "Mid, Carl" in text
        assert "2023-06-15" in text
        # the search form posts: what is searched for never goes into a URL
        assert 'method="post" action="/"' in page.text
        assert inline_code(page.text) == []
        # a reader sees no control that writes
        assert 'href="/upload"' not in page.text
        assert 'href="/admin"' not in page.text


async def test_search_by_each_field(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        smith = await store_study(
            http,
            settings,
            PatientName="Smith^John^Q",
            PatientID="MRN-0042",
            AccessionNumber="ACC-777",
            StudyDescription="CT CHEST W/O CONTRAST",
            StudyDate="20240110",
        )
        muller = await store_study(
            http,
            settings,
            PatientName="Müller^Jürgen",
            PatientID="X-9",
            AccessionNumber="B-1",
            StudyDescription="MR KNEE",
            StudyDate="20240320",
            Modality="MR",
        )
        session = await signed_in(http, services, permissions=["read"])
        token = csrf_header(services, session)["X-CSRF-Token"]

        async def found(**fields: str) -> list[str]:
            response = await http.post("/", data={"csrf_token": token, **fields}, headers=HTMX)
            assert response.status_code == 200, response.text
            assert "<html" not in response.text  # htmx gets the results alone
            return study_links(response.text)

        # names fuzzily: word prefixes in any order, case and accents folded
        assert await found(patient_name="john smi") == [smith]
        assert await found(patient_name="muller") == [muller]
        assert await found(patient_name="Sm*") == [smith]
        assert await found(patient_id="0042") == [smith]
        assert await found(accession="777") == [smith]
        assert await found(description="knee") == [muller]
        assert await found(modality="MR") == [muller]
        assert await found(date_from="2024-03-01") == [muller]
        assert await found(date_to="2024-02-01") == [smith]
        assert await found(date_from="2024-01-01", date_to="2024-12-31") == [muller, smith]
        assert await found(patient_name="nobody") == []
        # without htmx the whole page comes back, the form filled in as posted
        page = await http.post("/", data={"csrf_token": token, "patient_name": "john smi"})
        assert page.status_code == 200
        assert study_links(page.text) == [smith]
        assert 'value="john smi"' in page.text


async def test_sorting_and_paging(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        names = [f"Patient{n:02d}^Test" for n in range(30)]
        studies = {
            name: await store_study(
                http, settings, PatientName=name, StudyDate=f"2024{n % 12 + 1:02d}15"
            )
            for n, name in enumerate(names)
        }
        session = await signed_in(http, services, permissions=["read"])
        token = csrf_header(services, session)["X-CSRF-Token"]
        form = {"csrf_token": token, "current_sort": "date", "current_dir": "desc"}

        first = await http.post("/", data={**form, "sort": "name"}, headers=HTMX)
        by_name = [studies[n] for n in names]
        assert study_links(first.text) == by_name[:25]
        assert "Studies 1\u201325 of 30" in text_of(first.text)
        assert "Page 1 of 2" in text_of(first.text)
        assert 'aria-sort="ascending"' in first.text
        # the next page keeps the order (the form says what it is)
        second = await http.post(
            "/",
            data={**form, "current_sort": "name", "current_dir": "asc", "page": "2"},
            headers=HTMX,
        )
        assert study_links(second.text) == by_name[25:]
        assert "Studies 26\u201330 of 30" in text_of(second.text)
        # the same column again: the other way
        back = await http.post(
            "/",
            data={**form, "current_sort": "name", "current_dir": "asc", "sort": "name"},
            headers=HTMX,
        )
        assert study_links(back.text) == list(reversed(by_name))[:25]
        assert 'aria-sort="descending"' in back.text
        # a larger page holds them all
        everything = await http.post("/", data={**form, "page_size": "50"}, headers=HTMX)
        assert len(study_links(everything.text)) == 30


async def test_bad_search_input_is_a_clear_error(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        session = await signed_in(http, services, permissions=["read"])
        token = csrf_header(services, session)["X-CSRF-Token"]
        for fields, message in (
            ({"date_from": "2024-05-01", "date_to": "2024-01-01"}, "the first date is after"),
            ({"date_from": "yesterday"}, "a date as YYYY-MM-DD"),
            ({"patient_id": "a\\b"}, "backslashes"),
            ({"modality": "C T;"}, "a DICOM modality code"),
            ({"page_size": "7"}, "page size"),
            ({"sort": "birthdate"}, "cannot be sorted"),
            ({"patient_name": "x" * 65}, "at most 64"),
        ):
            page = await http.post("/", data={"csrf_token": token, **fields})
            assert page.status_code == 400, fields
            assert message in page.text, (fields, text_of(page.text)[:400])
            swapped = await http.post("/", data={"csrf_token": token, **fields}, headers=HTMX)
            assert swapped.status_code == 200  # htmx swaps only 2xx: the error is in the results
            assert 'role="alert"' in swapped.text


async def test_html_in_patient_names_and_descriptions_is_text(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await store_study(
            http,
            settings,
            PatientName='<script>alert("x")</script>^<img src=x onerror=alert(1)>',
            StudyDescription="<b onmouseover=alert(2)>CT</b>",
            AccessionNumber="<i>1</i>",
        )
        await signed_in(http, services, permissions=["read"])
        page = await http.get("/")
        assert "<script>alert" not in page.text
        assert "<img src=x" not in page.text
        assert "<b onmouseover" not in page.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page.text
        assert inline_code(page.text) == []


async def test_searches_are_audited_with_what_was_asked(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await store_study(http, settings, PatientName="Audit^Me", PatientID="P-AUD")
        session = await signed_in(http, services, subject="nina", permissions=["read"])
        token = csrf_header(services, session)["X-CSRF-Token"]
        await http.post("/", data={"csrf_token": token, "patient_id": "P-AUD"}, headers=HTMX)
        await services.audit.flush()
        events, _ = await services.audit.search(
            AuditFilter(actor="nina", action="search"), limit=10, offset=0
        )
        asked = [e for e in events if "P-AUD" in (e["detail"] or "")]
        assert asked, events
        assert asked[0]["count"] == 1
        assert asked[0]["outcome"] == "success"


async def test_a_user_who_may_not_read_gets_no_list(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        study = await store_study(http, settings, PatientName="Hidden^Person")
        session = await signed_in(http, services, permissions=["write"])
        page = await http.get("/")
        assert page.status_code == 200
        assert "Hidden" not in page.text
        assert study not in page.text
        assert 'href="/upload"' in page.text
        token = csrf_header(services, session)["X-CSRF-Token"]
        refused = await http.post("/", data={"csrf_token": token, "patient_name": "hidden"})
        assert refused.status_code == 403


async def test_a_search_without_its_csrf_token_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with web_client(settings) as (services, http):
        await signed_in(http, services, permissions=["read"])
        assert (await http.post("/", data={"patient_name": "x"})).status_code == 403
        wrong = await http.post("/", data={"patient_name": "x", "csrf_token": "nope"})
        assert wrong.status_code == 403
