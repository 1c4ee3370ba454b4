"""DIMSE test fixtures: a listener running in this process on each index database, peers
(DCMTK's command-line tools, pynetdicom as SCU), and the audit rows an actor left."""

import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pynetdicom import AE, _config
from pynetdicom.association import Association

from app.config import DimseSettings, Settings
from app.dimse.bridge import Bridge
from app.dimse.server import DimseServer, listening
from app.services.audit import AuditFilter
from app.services.container import Services
from tests.conftest import make_settings, truncate
from tests.dimse.ports import free_port
from tests.ingested import store
from tests.ports import PortRange

T = TypeVar("T")

#: the DIMSE ports these tests may use (and, for HTTP servers, 18100-18199)
dimse_port = PortRange(range(11100, 11200))
http_port = PortRange(range(18100, 18200))


def calling_ae() -> str:
    """A calling AE title of its own for one test (its audit rows are found by it)."""
    return "T" + uuid.uuid4().hex[:10].upper()


@dataclass
class Running:
    """A listener in this process and the bridge into its services' loop."""

    server: DimseServer
    bridge: Bridge
    settings: Settings

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def services(self) -> Services:
        return self.server.ctx.services

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.bridge.run(coro)

    def audit_rows(self, ae_title: str, action: str | None = None) -> list[dict[str, Any]]:
        """The audit rows of calling AE ``ae_title`` (oldest first), once the queue is written."""

        async def rows() -> list[dict[str, Any]]:
            await self.services.audit.flush()
            found = [
                row
                async for row in self.services.audit.rows(
                    AuditFilter(actor=f"dimse:{ae_title}", action=action)
                )
            ]
            return found

        return self.run(rows())


@contextmanager
def running(settings: Settings) -> Iterator[Running]:
    """A DIMSE listener on ``settings`` (index emptied first)."""
    bridge = Bridge()
    bridge.start()
    try:
        with listening(settings, bridge) as server:
            bridge.run(truncate(server.ctx.services.db))
            yield Running(server, bridge, settings)
    finally:
        bridge.stop()


def dimse_settings(database_url: str, data_dir: Path, **dimse: Any) -> Settings:
    values: dict[str, Any] = {"port": dimse_port(), "ae_title": "LIGHTBOX"}
    values.update(dimse)
    return make_settings(database_url, data_dir, dimse=DimseSettings(**values))


@pytest.fixture(scope="module")
def module_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One listener per test module and index database, shared by its tests."""
    settings = dimse_settings(database_url, tmp_path_factory.mktemp("dimse") / "data")
    with running(settings) as server:
        yield server


@pytest.fixture
def dimse(module_server: Running) -> Running:
    """The module's listener, its index emptied."""
    module_server.run(truncate(module_server.services.db))
    return module_server


def dcmtk(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool; its output (stdout and stderr) in ``.stdout``."""
    return subprocess.run(
        list(args),
        capture_output=False,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )


CT = "1.2.840.10008.5.1.4.1.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"


def send_file(assoc: Association, path: Path) -> int:
    """C-STORE the data set of ``path`` as it is on disk (no decoding, no re-encoding), under
    the SOP class and instance its File Meta names."""
    saved = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        status = assoc.send_c_store(path)
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = saved
    return int(status.Status)


@contextmanager
def ct_association(
    port: int, calling: str | None = None, also: tuple[str, ...] = ()
) -> Iterator[Association]:
    """An association proposing CT Image Storage (and ``also``: see :func:`store_path`)."""
    with association(port, (CT, [EXPLICIT]), *also, calling=calling) as assoc:
        yield assoc


#: Storage Commitment Push Model: proposed beside storage, it sends the association to pynetdicom
STORE_COMMITMENT = "1.2.840.10008.1.20.1"


@pytest.fixture(params=["loop", "pynetdicom"])
def store_path(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """What a storage association proposes besides CT Image Storage, to reach each C-STORE
    path: nothing (the front door serves it on the services' loop, app.dimse.front_door), or
    Storage Commitment (pynetdicom serves it, app.dimse.store)."""
    return () if request.param == "loop" else (STORE_COMMITMENT,)


#: Study Root C-FIND, and C-MOVE: proposed beside C-FIND, it sends the association to pynetdicom
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"


@contextmanager
def association(
    port: int,
    *contexts: str | tuple[str, list[str]],
    calling: str | None = None,
    max_pdu: int = 16382,  # what pynetdicom proposes by default
) -> Iterator[Association]:
    """An association proposing ``contexts`` (an abstract syntax in pynetdicom's default
    transfer syntaxes, or with its own), released at the end."""
    ae = AE(ae_title=calling or calling_ae())
    for context in contexts:
        if isinstance(context, str):
            ae.add_requested_context(context)
        else:
            ae.add_requested_context(*context)
    assoc = ae.associate("127.0.0.1", port, ae_title="LIGHTBOX", max_pdu=max_pdu)
    assert assoc.is_established
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


@pytest.fixture(params=["loop", "pynetdicom"])
def find_path(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """What a C-FIND association proposes besides its C-FIND context, to reach each C-FIND
    path: nothing (served on the services' loop, app.dimse.loop_find), or Study Root C-MOVE
    (pynetdicom serves it, app.dimse.find)."""
    return () if request.param == "loop" else (STUDY_MOVE,)


# --- Query/Retrieve (C-FIND, C-MOVE, C-GET): listeners on ports 11200-11299 ---


def ingest(server: Running, *raws: bytes) -> None:
    """Store PS3.10 files through the ingest service (the STOW-RS path)."""

    server.run(store(server.services, *raws))


def qr_settings(database_url: str, data_dir: Path, **dimse: Any) -> Settings:
    """:func:`dimse_settings` on a port of the Query/Retrieve tests' range."""
    return dimse_settings(database_url, data_dir, **{"port": free_port(), **dimse})


@pytest.fixture(scope="module")
def qr_module_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """One listener per Query/Retrieve test module and index database."""
    settings = qr_settings(database_url, tmp_path_factory.mktemp("qr") / "data")
    with running(settings) as server:
        yield server


@pytest.fixture
def qr(qr_module_server: Running) -> Running:
    """The module's Query/Retrieve listener, its index emptied."""
    qr_module_server.run(truncate(qr_module_server.services.db))
    return qr_module_server
