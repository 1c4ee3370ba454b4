"""Scoped grants: a share token for study A sees only A, and nothing of study B (issue point 3)."""

from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.auth.helpers import auth_client, auth_settings
from tests.auth.test_every_route import _PARAM, _SAMPLES, route_templates
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"


class Study:
    def __init__(self, patient: str) -> None:
        self.patient = patient
        self.study, self.series, self.instance = generate_uid(), generate_uid(), generate_uid()

    def instance_bytes(self) -> bytes:
        return make_instance(
            StudyInstanceUID=self.study,
            SeriesInstanceUID=self.series,
            SOPInstanceUID=self.instance,
            PatientID=self.patient,
        )

    def fill(self, template: str) -> str:
        values = {"study": self.study, "series": self.series, "instance": self.instance}
        return _PARAM.sub(lambda m: values.get(m.group(1), _SAMPLES.get(m.group(1), "1")), template)


async def _store(http: httpx.AsyncClient, headers: dict[str, str], *studies: Study) -> None:
    body = multipart([s.instance_bytes() for s in studies])
    response = await http.post(
        f"{ROOT}/studies", content=body, headers={**stow_headers(), **headers}
    )
    assert response.status_code == 200, response.text


def _study_uids(response: httpx.Response) -> set[str]:
    if response.status_code == 204:
        return set()
    assert response.status_code == 200, response.text
    return {item["0020000D"]["Value"][0] for item in response.json()}


def _search_paths(http: httpx.AsyncClient) -> list[str]:
    """Every GET search route: its last segment is a collection (studies, series, instances)."""
    app = http._transport.app  # type: ignore[attr-defined]
    return [
        path
        for path, method in route_templates(app)
        if method == "GET" and path.rsplit("/", 1)[-1] in ("studies", "series", "instances")
    ]


def _retrieve_templates(http: httpx.AsyncClient) -> list[str]:
    """Every GET route that names a study (path or WADO-URI query) as a path template."""
    app = http._transport.app  # type: ignore[attr-defined]
    templates = []
    for path, method in route_templates(app):
        # the API's (the pages under /studies/{study} need permissions of their own: a study
        # page's delete confirmation needs delete; tests/web checks them)
        if method != "GET" or not path.startswith(ROOT):
            continue
        if "{study}" in path:
            templates.append(path)
        elif path.endswith("/wado"):
            templates.append(
                path + "?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
            )
    return templates


@pytest.mark.parametrize("deny_as_not_found", [False, True])
async def test_share_token_for_one_study(
    database_url: str, tmp_path: Path, deny_as_not_found: bool
) -> None:
    settings = auth_settings(database_url, tmp_path / "data", deny_as_not_found=deny_as_not_found)
    a, b = Study("PID-A"), Study("PID-B")
    async with auth_client(settings) as (_services, http, tokens):
        await _store(http, tokens.headers(["write"]), a, b)
        admin = tokens.headers(["read"])
        assert _study_uids(await http.get(f"{ROOT}/studies", headers=admin)) == {a.study, b.study}

        share = tokens.headers(["read"], studies=[a.study], subject="share-link")
        assert _study_uids(await http.get(f"{ROOT}/studies", headers=share)) == {a.study}
        searched_b = await http.get(f"{ROOT}/studies?StudyInstanceUID={b.study}", headers=share)
        assert searched_b.status_code == 204
        counted = await http.get(f"{ROOT}/studies", headers=share)
        assert counted.headers["x-total-count"] == "1"

        # every search route (any level, any router) filters by the grant: B never shows up
        searches = _search_paths(http)
        assert f"{ROOT}/studies" in searches
        for path in searches:
            found = await http.get(a.fill(path), headers=share)
            assert found.status_code in (200, 204), (path, found.status_code, found.text)
            listed = found.json() if found.status_code == 200 else []
            assert all(
                item.get("0020000D", {}).get("Value", [a.study])[0] == a.study for item in listed
            ), path

        templates = _retrieve_templates(http)
        assert len(templates) >= 8
        refused = 404 if deny_as_not_found else 403
        for template in templates:
            to_b = await http.get(b.fill(template), headers=share)
            assert to_b.status_code == refused, (template, to_b.status_code)
            to_a = await http.get(a.fill(template), headers=share)
            assert to_a.status_code not in (401, 403), (template, to_a.status_code)
        whole_a = await http.get(
            a.fill(f"{ROOT}/studies/{{study}}"), headers={**share, "Accept": "multipart/related"}
        )
        assert whole_a.status_code == 200

        # a share token cannot store into another study nor store unscoped
        write_share = tokens.headers(["read", "write"], studies=[a.study])
        unscoped = await http.post(
            f"{ROOT}/studies",
            content=multipart([Study("PID-C").instance_bytes()]),
            headers={**stow_headers(), **write_share},
        )
        assert unscoped.status_code == refused
        into_b = await http.post(
            f"{ROOT}/studies/{b.study}",
            content=multipart([b.instance_bytes()]),
            headers={**stow_headers(), **write_share},
        )
        assert into_b.status_code == refused


async def test_patient_grant(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    a, b, b2 = Study("PID-A"), Study("PID-B"), Study("PID-B")
    async with auth_client(settings) as (_services, http, tokens):
        await _store(http, tokens.headers(["write"]), a, b, b2)
        physician = tokens.headers(["read"], patients=["PID-B"], subject="referrer")
        found = _study_uids(await http.get(f"{ROOT}/studies", headers=physician))
        assert found == {b.study, b2.study}
        for template in _retrieve_templates(http):
            assert (await http.get(a.fill(template), headers=physician)).status_code == 403
            assert (await http.get(b.fill(template), headers=physician)).status_code != 403
        # a study that does not exist is refused the same way as one of another patient
        missing = await http.get(f"{ROOT}/studies/{generate_uid()}/metadata", headers=physician)
        assert missing.status_code == 403
        # both restrictions at once: the study must satisfy both
        both = tokens.headers(["read"], patients=["PID-B"], studies=[a.study, b.study])
        assert _study_uids(await http.get(f"{ROOT}/studies", headers=both)) == {b.study}


async def test_scoped_token_refused_where_no_study_is_named_and_nothing_filters(
    database_url: str, tmp_path: Path
) -> None:
    """Fail closed: a route that names no study and does not take the grant refuses it."""
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (_services, http, tokens):
        share = tokens.headers(["read", "admin"], studies=[generate_uid()])
        assert (await http.get("/api/audit", headers=share)).status_code == 403
        assert (await http.get(f"{ROOT}/studies", headers=share)).status_code == 204
