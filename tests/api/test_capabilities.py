"""Capabilities (RES-11, CAP-01/02/03), OPTIONS and 405 with Allow (GEN-04), CORS preflights
left to CORS handling (GEN-09)."""

import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import orjson
import pytest

from app.api.capabilities import JSON, WADL
from app.cli import conformance_text
from app.config import DuplicatePolicy, Settings
from app.main import create_app
from app.services.container import Services
from tests.conftest import app_client, make_settings

ROOT = "/dicom-web"
REPO = Path(__file__).resolve().parent.parent.parent
NS = {"w": "http://wadl.dev.java.net/2009/02"}
STUDY = "1.2.3"
INSTANCE = f"/studies/{STUDY}/series/1.2.4/instances/1.2.5"

#: every resource and the methods it must allow (GEN-04); HEAD wherever GET (app.api.head)
RESOURCES = {
    "/studies": ["GET", "HEAD", "POST", "OPTIONS"],
    f"/studies/{STUDY}": ["GET", "HEAD", "POST", "DELETE", "OPTIONS"],
    f"/studies/{STUDY}/metadata": ["GET", "HEAD", "OPTIONS"],
    f"/studies/{STUDY}/series/1.2.4": ["GET", "HEAD", "DELETE", "OPTIONS"],
    f"/studies/{STUDY}/series/1.2.4/metadata": ["GET", "HEAD", "OPTIONS"],
    INSTANCE: ["GET", "HEAD", "DELETE", "OPTIONS"],
    f"{INSTANCE}/metadata": ["GET", "HEAD", "OPTIONS"],
    f"{INSTANCE}/frames/1,2": ["GET", "HEAD", "OPTIONS"],
    f"{INSTANCE}/bulkdata/7FE00010": ["GET", "HEAD", "OPTIONS"],
    f"{INSTANCE}/rendered": ["GET", "HEAD", "OPTIONS"],
    "/wado": ["GET", "HEAD", "OPTIONS"],
}


def _allow(response: httpx.Response) -> list[str]:
    return [m.strip() for m in response.headers["allow"].split(",")]


async def test_capabilities_wadl_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options(f"{ROOT}/")
    assert response.status_code == 200
    assert response.headers["content-type"] == WADL
    assert _allow(response) == ["OPTIONS"]
    tree = ET.fromstring(response.content)
    (resources,) = tree.findall("w:resources", NS)
    assert resources.get("base") == f"http://testserver{ROOT}/"
    by_path = {r.get("path"): r for r in resources.findall("w:resource", NS)}
    study = by_path["studies/{study}"]
    assert [m.get("name") for m in study.findall("w:method", NS)] == ["GET", "POST", "DELETE"]
    assert [p.get("name") for p in study.findall("w:param", NS)] == ["study"]
    search = by_path["studies"].find("w:method[@name='GET']", NS)
    assert search is not None
    query = {p.get("name") for p in search.findall("w:request/w:param", NS)}
    assert {"includefield", "limit", "offset", "PatientName", "StudyDate"} <= query
    types = {
        r.get("mediaType") for r in search.findall("w:response[@status='200']/w:representation", NS)
    }
    assert "application/dicom+json" in types
    # without the slash too
    assert (await client.options(ROOT)).content == response.content


@pytest.mark.parametrize(
    "accept", [JSON, "application/dicom+json", f"{WADL}; q=0.5, {JSON}", "application/*; q=1"]
)
async def test_capabilities_json(
    client: httpx.AsyncClient, services: Services, accept: str
) -> None:
    response = await client.options(f"{ROOT}/", headers={"Accept": accept})
    assert response.status_code == 200
    expected = WADL if accept == "application/*; q=1" else JSON  # a tie goes to WADL
    assert response.headers["content-type"] == expected
    if expected != JSON:
        return
    caps = orjson.loads(response.content)
    paths = {r["path"]: [m["method"] for m in r["methods"]] for r in caps["resources"]}
    # the description and the router agree on every resource (OPTIONS is the middleware's, and
    # HEAD is every GET's: no operation of its own)
    for path, methods in RESOURCES.items():
        template = next(p for p in paths if _fits(p, path))
        assert [*paths[template], "OPTIONS"] == [m for m in methods if m != "HEAD"], path
    assert caps["query"]["maxResults"] == services.query.max_results
    assert caps["query"]["fuzzyMatching"] is True
    keys = caps["query"]["matchingKeys"]
    assert "Modality" in keys["/studies/{study}/series"]
    assert "Modality" not in keys["/studies"]  # QIDO-03: series keys are not study keys
    assert "SOPInstanceUID" in keys["/instances"]
    assert "1.2.840.10008.1.2.4.50" in caps["transferSyntaxes"]["store"]
    assert "ISO_IR 192" in caps["characterSets"]
    assert caps["extensions"]["delete"]["enabled"] is True
    codes = {c["code"] for c in caps["store"]["failureCodes"]}
    assert {"0110", "0111", "0122", "A700", "C000", "C122"} <= codes


def _fits(template: str, path: str) -> bool:
    a, b = template.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


async def test_capabilities_follow_the_settings(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url,
        tmp_path / "data",
        duplicate_policy=DuplicatePolicy.OVERWRITE,
        allow_delete=False,
        public_base_url="https://pacs.example.org/dicom-web",
    )
    async with app_client(settings) as (_services, client):
        response = await client.options(f"{ROOT}/", headers={"Accept": JSON})
        caps = orjson.loads(response.content)
        assert caps["service"]["base"] == "https://pacs.example.org/dicom-web"
        assert caps["store"]["duplicatePolicy"] == "overwrite"
        assert caps["extensions"]["delete"]["enabled"] is False
        options = await client.options(f"{ROOT}/studies/{STUDY}")
        assert _allow(options) == ["GET", "HEAD", "POST", "OPTIONS"]


async def test_capabilities_not_acceptable(client: httpx.AsyncClient) -> None:
    response = await client.options(f"{ROOT}/", headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert response.headers["content-type"] == "application/problem+json"


async def test_options_on_other_paths_and_405_with_allow(client: httpx.AsyncClient) -> None:
    for path, methods in RESOURCES.items():
        options = await client.options(ROOT + path)
        assert options.status_code == 204, path
        assert options.content == b""
        assert _allow(options) == methods, path
        for wrong in ("PUT", "PATCH", "GET", "POST", "DELETE"):
            if wrong in methods:
                continue
            response = await client.request(wrong, ROOT + path)
            assert response.status_code == 405, (wrong, path)
            assert _allow(response) == methods, (wrong, path)
            assert response.headers["content-type"] == "application/problem+json"
    # the service root has no GET, so no HEAD either
    root = await client.head(f"{ROOT}/")
    assert (root.status_code, _allow(root), root.content) == (405, ["OPTIONS"], b"")
    for unknown in (f"{ROOT}/nothing", f"{ROOT}/studies/1.2.3/frames", "/other"):
        assert (await client.options(unknown)).status_code == 404
        assert (await client.head(unknown)).status_code == 404
        assert (await client.get(unknown)).status_code == 404
        assert (await client.put(unknown)).status_code == 404


async def test_cors_preflight_is_left_to_cors_handling(services: Services) -> None:
    preflight = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "GET"}
    closed = create_app(Settings(_env_file=None, auth={"enabled": False}), services=services)
    transport = httpx.ASGITransport(app=closed)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        # no origin allowed (the default): the CORS layer refuses the preflight; it is never
        # answered as a capabilities request
        for path in ("/", "/studies"):
            response = await http.options(ROOT + path, headers=preflight)
            assert response.status_code == 400, path
            assert "access-control-allow-origin" not in response.headers
            assert b"wadl" not in response.content

    settings = Settings(
        _env_file=None,
        auth={"enabled": False},
        cors={"allow_origins": ["https://viewer.example"]},
    )
    transport = httpx.ASGITransport(app=create_app(settings, services=services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for path in ("/", "/studies", f"/studies/{STUDY}/metadata"):
            response = await http.options(ROOT + path, headers=preflight)
            assert response.status_code == 200, path
            assert response.headers["access-control-allow-origin"] == "https://viewer.example"
            assert b"wadl" not in response.content
        # and a plain OPTIONS still gets the capabilities
        caps = await http.options(f"{ROOT}/", headers={"Origin": "https://viewer.example"})
        assert caps.headers["content-type"] == WADL


def test_conformance_statement_is_current() -> None:
    committed = (REPO / "docs" / "conformance.md").read_text()
    assert conformance_text() == committed, (
        "docs/conformance.md is stale: run `lightbox conformance`"
    )
