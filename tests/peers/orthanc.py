"""Orthanc as a DICOM peer of the tests: a throwaway server on 127.0.0.1 (Orthanc 1.10, the
Debian package), for the DIMSE tests (a C-MOVE destination, a C-FIND SCU of Lightbox, the
legacy PACS ``lightbox pull`` migrates from).

``with orthanc(workdir, modalities={...}) as peer`` writes a configuration for the ports given
(or free ones), starts Orthanc and waits for its REST API; leaving the block stops it. Orthanc
1.10 has no bind-address option: it is started with an ``LD_PRELOAD`` shim, built once per
process from the C source below, that turns its wildcard binds into 127.0.0.1 (and with
``RemoteAccessAllowed`` false as a second guard). The same idea as the benchmark harness's
``peer_orthanc.sh``, kept here so that the tests depend on nothing outside the repository.

The REST calls the tests need are methods of :class:`Orthanc`: upload an instance, list and
read what it holds, ask it to C-FIND / C-MOVE / C-STORE to one of its modalities.
"""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from tests.processes import stop

__all__ = ["BINARY", "Modality", "Orthanc", "orthanc"]

#: the Orthanc binary (``ORTHANC_BIN`` overrides it)
BINARY: Final = os.environ.get("ORTHANC_BIN", "Orthanc")
#: the plugins Debian's packages install
PLUGINS: Final = Path(os.environ.get("ORTHANC_PLUGINS_DIR", "/usr/share/orthanc/plugins"))
#: how long Orthanc may take to come up
START_TIMEOUT: Final = 60.0

_SHIM_SOURCE: Final = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

/* bind() to a wildcard address binds the loopback one instead */
int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
  static bind_fn real_bind = 0;
  if (!real_bind)
    real_bind = (bind_fn) dlsym(RTLD_NEXT, "bind");
  if (addr && addr->sa_family == AF_INET && len >= (socklen_t) sizeof(struct sockaddr_in)) {
    struct sockaddr_in a;
    memcpy(&a, addr, sizeof(a));
    if (a.sin_addr.s_addr == htonl(INADDR_ANY)) {
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      return real_bind(fd, (const struct sockaddr *) &a, sizeof(a));
    }
  } else if (addr && addr->sa_family == AF_INET6
             && len >= (socklen_t) sizeof(struct sockaddr_in6)) {
    struct sockaddr_in6 a;
    memcpy(&a, addr, sizeof(a));
    if (memcmp(&a.sin6_addr, &in6addr_any, sizeof(in6addr_any)) == 0) {
      a.sin6_addr = in6addr_loopback;
      return real_bind(fd, (const struct sockaddr *) &a, sizeof(a));
    }
  }
  return real_bind(fd, addr, len);
}
"""

_shim_lock = threading.Lock()
_shim: Path | None = None


def _bind_shim() -> Path:
    """The loopback-bind shim, compiled once per process (``cc``, or ``$CC``)."""
    global _shim
    with _shim_lock:
        if _shim is None or not _shim.exists():
            directory = Path(tempfile.mkdtemp(prefix="orthanc-shim-"))
            source = directory / "bind_loopback.c"
            source.write_text(_SHIM_SOURCE)
            target = directory / "bind_loopback.so"
            compiler = os.environ.get("CC", "cc")
            subprocess.run(
                [compiler, "-shared", "-fPIC", "-O2", "-o", str(target), str(source), "-ldl"],
                check=True,
                capture_output=True,
            )
            _shim = target
        return _shim


@dataclass(frozen=True, slots=True)
class Modality:
    """A DICOM peer Orthanc knows (its ``DicomModalities`` entry)."""

    ae_title: str
    port: int
    host: str = "127.0.0.1"


@dataclass
class Orthanc:
    """A running Orthanc: its AE title, ports, work directory, and a REST client."""

    ae_title: str
    http_port: int
    dicom_port: int
    workdir: Path
    process: "subprocess.Popen[bytes]"
    http: httpx.Client

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def rest(self, method: str, path: str, body: Any = None, **kwargs: Any) -> Any:
        """A REST call; the decoded JSON answer (bytes for a non-JSON one)."""
        if body is not None and not isinstance(body, bytes):
            kwargs["json"] = body
        elif body is not None:
            kwargs["content"] = body
        response = self.http.request(method, path, **kwargs)
        response.raise_for_status()
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.content

    def upload(self, raw: bytes) -> str:
        """Store a PS3.10 file (REST ``POST /instances``); its Orthanc ID."""
        answer = self.rest("POST", "/instances", raw)
        return str(answer["ID"])

    def instances(self) -> list[str]:
        return [str(i) for i in self.rest("GET", "/instances")]

    def instance_file(self, orthanc_id: str) -> bytes:
        data: bytes = self.rest("GET", f"/instances/{orthanc_id}/file")
        return data

    def sop_uid(self, orthanc_id: str) -> str:
        tags = self.rest("GET", f"/instances/{orthanc_id}/simplified-tags")
        return str(tags["SOPInstanceUID"])

    def find(self, modality: str, level: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Ask Orthanc to C-FIND ``modality``; the answers' tags (simplified)."""
        created = self.rest(
            "POST", f"/modalities/{modality}/query", {"Level": level, "Query": dict(query)}
        )
        path = created["Path"]
        answers = self.rest("GET", f"{path}/answers")
        return [
            self.rest("GET", f"{path}/answers/{index}/content", params={"simplify": ""})
            for index in answers
        ]

    def log(self) -> str:
        path = self.workdir / "orthanc.log"
        return path.read_text(errors="replace") if path.exists() else ""


def _config(
    workdir: Path,
    ae_title: str,
    http_port: int,
    dicom_port: int,
    modalities: Mapping[str, Modality],
    dicomweb: bool,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    plugins = [str(PLUGINS / "libOrthancDicomWeb.so")] if dicomweb else []
    return {
        "Name": "lightbox-test-peer",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "index"),
        "Plugins": plugins,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "DicomModalities": {name: [m.ae_title, m.host, m.port] for name, m in modalities.items()},
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": False,
        "DicomScpTimeout": 30,
        "SyncStorageArea": False,
        "SaveJobs": False,
        "StorageCompression": False,
        "OverwriteInstances": False,
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "StableAge": 1,
        "DicomWeb": {"Enable": dicomweb, "Root": "/dicom-web/"},
        **options,
    }


@contextmanager
def orthanc(
    workdir: Path,
    *,
    ae_title: str = "ORTHANC",
    http_port: int,
    dicom_port: int,
    modalities: Mapping[str, Modality] | None = None,
    dicomweb: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Iterator[Orthanc]:
    """Start Orthanc on 127.0.0.1 with a configuration of its own in ``workdir``; stop it on
    exit. ``modalities`` are the peers it may query and send to (by name); ``options`` are
    configuration entries of its own, over the defaults."""
    if shutil.which(BINARY) is None:
        raise RuntimeError(f"Orthanc not found ({BINARY}): apt-get install orthanc")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "storage").mkdir(exist_ok=True)
    (workdir / "index").mkdir(exist_ok=True)
    config = workdir / "orthanc.json"
    config.write_text(
        json.dumps(
            _config(
                workdir, ae_title, http_port, dicom_port, modalities or {}, dicomweb, options or {}
            ),
            indent=2,
        )
    )
    environment = {**os.environ, "LD_PRELOAD": str(_bind_shim())}
    with (workdir / "stdout.log").open("wb") as stdout:
        process = subprocess.Popen(
            [BINARY, f"--logfile={workdir / 'orthanc.log'}", str(config)],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            env=environment,
        )
    http = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", timeout=30)
    peer = Orthanc(ae_title, http_port, dicom_port, workdir, process, http)
    try:
        _wait_up(peer)
        yield peer
    finally:
        http.close()
        stop(process, timeout=20)


def _wait_up(peer: Orthanc) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if peer.process.poll() is not None:
            raise RuntimeError(f"Orthanc exited with {peer.process.returncode}:\n{peer.log()}")
        try:
            if peer.http.get("/system").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"Orthanc did not come up:\n{peer.log()[-2000:]}")
