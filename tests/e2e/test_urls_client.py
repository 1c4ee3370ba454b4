"""RetrieveURL and BulkDataURI as curl and dicomweb-client meet them on a server on a port that
is not the scheme's default. curl sends the port in Host; dicomweb-client sends its host name
without it (whatever its URL): every URL keeps the port, from the Host header or from the
connection, and works; LIGHTBOX_PUBLIC_BASE_URL overrides both (docs/operations.md)."""

import json
import subprocess
from pathlib import Path

import httpx
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from tests.e2e.server import running_server, server_env
from tests.factories import make_dataset, multipart, stow_headers, to_bytes


def _curl(*args: str) -> dict[str, object]:
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", *args],
        capture_output=True,
        timeout=60,
        check=True,
    )
    body: dict[str, object] = json.loads(done.stdout)
    return body


def test_urls_keep_the_port(tmp_path: Path) -> None:
    env = server_env(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'index.db'}")
    with running_server(env) as server:
        assert server.port not in (80, 443)
        study = generate_uid()
        body_file = tmp_path / "body"
        body_file.write_bytes(multipart([to_bytes(make_dataset(StudyInstanceUID=study))]))
        content_type = stow_headers()["Content-Type"]
        stored = _curl(
            "-X",
            "POST",
            f"{server.dicomweb}/studies",
            "-H",
            f"Content-Type: {content_type}",
            "--data-binary",
            f"@{body_file}",
        )
        url = stored["00081199"]["Value"][0]["00081190"]["Value"][0]  # type: ignore[index]
        assert url.startswith(f"http://127.0.0.1:{server.port}/dicom-web/studies/{study}/")
        assert (
            httpx.get(
                url, headers={"Accept": 'multipart/related; type="application/dicom"'}
            ).status_code
            == 200
        )

        # dicomweb-client (requests): the metadata's BulkDataURI keeps the port, and it works
        client = DICOMwebClient(server.dicomweb)
        big = make_dataset(StudyInstanceUID=study, rows=64, columns=64)
        client.store_instances([big])
        metadata = client.retrieve_instance_metadata(
            study, str(big.SeriesInstanceUID), str(big.SOPInstanceUID)
        )
        bulk = metadata["7FE00010"]["BulkDataURI"]
        assert bulk.startswith(f"http://127.0.0.1:{server.port}/dicom-web/")
        assert (
            httpx.get(
                bulk, headers={"Accept": 'multipart/related; type="application/octet-stream"'}
            ).status_code
            == 200
        )

        # and so does any client that leaves the port out of Host
        portless = _curl(
            "-X",
            "POST",
            f"{server.dicomweb}/studies",
            "-H",
            "Host: localhost",
            "-H",
            f"Content-Type: {content_type}",
            "--data-binary",
            f"@{body_file}",
        )
        assert portless["00081190"]["Value"][0].startswith(  # type: ignore[index]
            f"http://localhost:{server.port}/dicom-web/"
        )
        # dicomweb-client follows the BulkDataURI it was given
        assert client.retrieve_bulkdata(bulk)

    # LIGHTBOX_PUBLIC_BASE_URL fixes every URL, whatever the Host header
    env["LIGHTBOX_PUBLIC_BASE_URL"] = "https://pacs.example.org:8443/dicom-web"
    with running_server(env) as server:
        again = _curl(
            "-X",
            "POST",
            f"{server.dicomweb}/studies",
            "-H",
            "Host: 127.0.0.1",
            "-H",
            f"Content-Type: {content_type}",
            "--data-binary",
            f"@{body_file}",
        )
        assert again["00081190"]["Value"][0].startswith("https://pacs.example.org:8443/dicom-web/")  # type: ignore[index]
