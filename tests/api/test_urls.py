"""The absolute URLs in responses (RetrieveURL, BulkDataURI) from the Host header, a trusted
proxy's X-Forwarded-* headers (X-Forwarded-Port included) or LIGHTBOX_PUBLIC_BASE_URL (GEN-01)."""

from pathlib import Path

from tests.conftest import app_client, make_settings
from tests.factories import make_dataset, multipart, stow_headers, to_bytes

STUDIES = "/dicom-web/studies"
PROXY = ("10.0.0.5", 40000)


async def _retrieve_url(
    database_url: str, tmp_path: Path, headers: dict[str, str], **settings: object
) -> str:
    async with app_client(make_settings(database_url, tmp_path, **settings), client_addr=PROXY) as (
        _services,
        http,
    ):
        ds = make_dataset()
        response = await http.post(
            STUDIES, content=multipart([to_bytes(ds)]), headers=stow_headers() | headers
        )
        assert response.status_code == 200, response.text
        url: str = response.json()["00081190"]["Value"][0]
        assert url.endswith(f"/dicom-web/studies/{ds.StudyInstanceUID}")
        return url.removesuffix(f"/dicom-web/studies/{ds.StudyInstanceUID}")


async def test_host_header(database_url: str, tmp_path: Path) -> None:
    assert await _retrieve_url(database_url, tmp_path, {"Host": "pacs:8042"}) == "http://pacs:8042"
    # no port: the scheme's default (RFC 9110 §7.2), as the client said
    assert await _retrieve_url(database_url, tmp_path, {"Host": "pacs"}) == "http://pacs"
    assert (
        await _retrieve_url(database_url, tmp_path, {"Host": "[::1]:8080"}) == "http://[::1]:8080"
    )


async def test_trusted_proxy_port(database_url: str, tmp_path: Path) -> None:
    trusted = {"trusted_proxies": [PROXY[0]]}
    dropped = {"Host": "pacs.example.org", "X-Forwarded-Proto": "https", "X-Forwarded-Port": "8443"}
    assert (
        await _retrieve_url(database_url, tmp_path, dropped, **trusted)
        == "https://pacs.example.org:8443"
    )
    # the scheme's own port is not written; a forwarded host with a port keeps it
    default = dropped | {"X-Forwarded-Port": "443"}
    assert (
        await _retrieve_url(database_url, tmp_path, default, **trusted)
        == "https://pacs.example.org"
    )
    named = dropped | {"X-Forwarded-Host": "pacs.example.org:9443"}
    assert (
        await _retrieve_url(database_url, tmp_path, named, **trusted)
        == "https://pacs.example.org:9443"
    )
    # nonsense in the port is ignored, as are all X-Forwarded-* of an untrusted peer
    junk = dropped | {"X-Forwarded-Port": "443x"}
    assert (
        await _retrieve_url(database_url, tmp_path, junk, **trusted) == "https://pacs.example.org"
    )
    assert await _retrieve_url(database_url, tmp_path, dropped) == "http://pacs.example.org"


async def test_public_base_url_wins(database_url: str, tmp_path: Path) -> None:
    base = "https://pacs.example.org:8443/dicom-web"
    assert (
        await _retrieve_url(
            database_url, tmp_path, {"Host": "internal"}, public_base_url=base + "/"
        )
        == "https://pacs.example.org:8443"
    )
