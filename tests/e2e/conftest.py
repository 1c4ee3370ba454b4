"""The end-to-end fixture: a real ``lightbox serve`` and a dicomweb-client talking to it."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.server import DicomwebServer, dicomweb_server


@pytest.fixture(name="dicomweb_server")
def dicomweb_server_fixture(
    request: pytest.FixtureRequest, fresh_database_url: str, tmp_path: Path
) -> Iterator[DicomwebServer]:
    """A server process on a fresh database of each kind, access control on, and a
    dicomweb-client with a token of every scope. Server settings a test needs go in its
    ``@pytest.mark.server_env(LIGHTBOX_NAME="value", ...)``."""
    marker = request.node.get_closest_marker("server_env")
    env: dict[str, str] = dict(marker.kwargs) if marker else {}
    with dicomweb_server(fresh_database_url, tmp_path / "data", **env) as server:
        yield server
