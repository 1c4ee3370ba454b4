"""CORS for browser viewers (GEN-09): preflights answered before auth, headers exposed."""

from pathlib import Path

from pydicom.uid import generate_uid

from tests.auth.helpers import auth_client, auth_settings
from tests.auth.test_every_route import ANONYMOUS, DOCUMENTATION, routes
from tests.factories import make_instance, multipart, stow_headers

VIEWER = "http://viewer.example:3000"
ROOT = "/dicom-web"


def _preflight(method: str, origin: str = VIEWER) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, accept, content-type",
    }


async def test_preflight_on_every_route_before_auth(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data", cors={"allow_origins": [VIEWER]})
    async with auth_client(settings) as (_services, http, _tokens):
        app = http._transport.app  # type: ignore[attr-defined]
        checked = 0
        for _route, path, method in routes(app):
            if path in DOCUMENTATION | ANONYMOUS:
                continue
            response = await http.options(path, headers=_preflight(method))
            assert response.status_code == 200, (method, path, response.text)
            assert response.headers["access-control-allow-origin"] == VIEWER
            allowed = response.headers["access-control-allow-headers"].lower()
            for header in ("authorization", "accept", "content-type"):
                assert header in allowed
            assert method in response.headers["access-control-allow-methods"]
            checked += 1
        assert checked >= 12
        stranger = await http.options(f"{ROOT}/studies", headers=_preflight("GET", "http://evil"))
        assert stranger.status_code == 400
        assert "access-control-allow-origin" not in stranger.headers


async def test_cross_origin_requests_with_a_token(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data", cors={"allow_origins": [VIEWER]})
    study, series, sop = generate_uid(), generate_uid(), generate_uid()
    body = multipart(
        [make_instance(StudyInstanceUID=study, SeriesInstanceUID=series, SOPInstanceUID=sop)]
    )
    async with auth_client(settings) as (_services, http, tokens):
        admin = {**tokens.headers(), "Origin": VIEWER}
        stored = await http.post(
            f"{ROOT}/studies", content=body, headers={**stow_headers(), **admin}
        )
        assert stored.status_code == 200
        assert stored.headers["access-control-allow-origin"] == VIEWER
        exposed = {
            h.strip().lower() for h in stored.headers["access-control-expose-headers"].split(",")
        }
        assert {"warning", "content-location", "content-type", "location"} <= exposed

        # the browser can read a 401 too (and so tell the user to log in)
        unauthorized = await http.get(f"{ROOT}/studies", headers={"Origin": VIEWER})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == VIEWER

        frames = await http.get(
            f"{ROOT}/studies/{study}/series/{series}/instances/{sop}/frames/1",
            headers={**admin, "Accept": "multipart/related; type=application/octet-stream"},
        )
        assert frames.status_code == 200
        assert frames.headers["cross-origin-resource-policy"] == "cross-origin"
        assert frames.headers["access-control-allow-origin"] == VIEWER


async def test_no_origin_allowed_by_default(database_url: str, tmp_path: Path) -> None:
    settings = auth_settings(database_url, tmp_path / "data")
    async with auth_client(settings) as (_services, http, tokens):
        preflight = await http.options(f"{ROOT}/studies", headers=_preflight("GET"))
        assert preflight.status_code == 400
        plain = await http.get(f"{ROOT}/studies", headers={**tokens.headers(), "Origin": VIEWER})
        assert plain.status_code == 204
        assert "access-control-allow-origin" not in plain.headers
