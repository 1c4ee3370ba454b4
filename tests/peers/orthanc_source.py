"""Orthanc as a legacy PACS to pull from: a throwaway Orthanc 1.10 on 127.0.0.1, started by a test.

Orthanc 1.10 has no bind-address option. It is started with an LD_PRELOAD shim (compiled here
from :data:`BIND_LOOPBACK_C`) that turns its wildcard binds into 127.0.0.1, and with
``RemoteAccessAllowed`` false as a second guard (the idea of ``../shared/peer/peer_orthanc.sh``,
kept self-contained: CI has no ``../shared``). Loaded through its REST API (``POST /instances``),
read back byte for byte (``GET /instances/{id}/file``).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ORTHANC = os.environ.get("ORTHANC_BIN") or shutil.which("Orthanc") or "/usr/sbin/Orthanc"

#: rewrites bind() to a wildcard address into loopback
BIND_LOOPBACK_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def build_shim(directory: Path) -> Path:
    """Compile the loopback-bind shim into ``directory``."""
    source = directory / "bind_loopback.c"
    library = directory / "bind_loopback.so"
    source.write_text(BIND_LOOPBACK_C)
    compiler = os.environ.get("CC", "cc")
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(source), "-ldl"]
    subprocess.run(command, check=True, capture_output=True)
    return library


@dataclass
class OrthancSource:
    """A running Orthanc: its DICOM AE and its REST API."""

    process: subprocess.Popen[bytes]
    ae_title: str
    dicom_port: int
    http_port: int
    workdir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def load(self, files: Mapping[str, bytes] | list[bytes]) -> list[str]:
        """Store PS3.10 files through the REST API; their Orthanc instance ids."""
        ids = []
        items = files.values() if isinstance(files, Mapping) else files
        with self.http() as client:
            for data in items:
                response = client.post("/instances", content=data)
                response.raise_for_status()
                ids.append(str(response.json()["ID"]))
        return ids

    def instance_files(self) -> dict[str, bytes]:
        """Every stored instance as Orthanc sends it, by SOP Instance UID."""
        out = {}
        with self.http() as client:
            for orthanc_id in client.get("/instances").json():
                tags = client.get(f"/instances/{orthanc_id}/simplified-tags").json()
                out[tags["SOPInstanceUID"]] = client.get(f"/instances/{orthanc_id}/file").content
        return out

    def stop(self) -> None:
        """Kill it: a throwaway whose storage is discarded (a clean stop takes seconds)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()


@contextmanager
def orthanc_source(
    workdir: Path, *, ae_title: str = "LEGACY", modalities: Mapping[str, tuple[str, str, int]] = {}
) -> Iterator[OrthancSource]:
    """Start Orthanc (DICOM and HTTP on free loopback ports) and stop it afterwards.

    ``modalities``: peers Orthanc knows (name -> (AE title, host, port)), needed for C-MOVE
    destinations; C-FIND and C-GET are accepted from any calling AE.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "storage").mkdir(exist_ok=True)
    shim = build_shim(workdir)
    dicom_port, http_port = free_port(), free_port()
    config = {
        "Name": "lightbox-test-legacy",
        "StorageDirectory": str(workdir / "storage"),
        "IndexDirectory": str(workdir / "storage"),
        "Plugins": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomPort": dicom_port,
        "DicomAet": ae_title,
        "DicomCheckCalledAet": True,  # a wrong called AE title is rejected
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "DicomAlwaysAllowStore": True,
        "DicomModalities": {name: list(peer) for name, peer in modalities.items()},
        "SyncStorageArea": False,
        "StorageCompression": False,
        "SaveJobs": False,
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "OrthancExplorerEnabled": False,
        "WebDavEnabled": False,
    }
    config_path = workdir / "orthanc.json"
    config_path.write_text(json.dumps(config, indent=2))
    log = (workdir / "stdout.log").open("wb")
    env = dict(os.environ, LD_PRELOAD=str(shim))
    process = subprocess.Popen(
        [ORTHANC, f"--logdir={workdir}", str(config_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    source = OrthancSource(process, ae_title, dicom_port, http_port, workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                output = (workdir / "stdout.log").read_text()[-2000:]
                raise RuntimeError(f"Orthanc exited: {output}")
            try:
                httpx.get(f"{source.url}/system", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not come up") from None
                time.sleep(0.1)
        yield source
    finally:
        source.stop()
        log.close()


def dataset_bytes(data: bytes) -> bytes:
    """A PS3.10 file's data set: what follows the preamble, "DICM" and the File Meta group
    (whose length its first element, (0002,0000) UL, gives)."""
    if data[128:132] != b"DICM" or data[132:136] != b"\x02\x00\x00\x00":
        raise ValueError("not a PS3.10 file with a File Meta Information Group Length")
    group_length = int.from_bytes(data[140:144], "little")
    return data[144 + group_length :]
