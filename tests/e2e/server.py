"""Run ``lightbox serve`` as a real process on 127.0.0.1 for end-to-end tests.

:func:`running_server` starts one on any settings; :func:`dicomweb_server` starts one as a
DICOMweb client meets it (access control on) and gives a dicomweb-client with a token.
"""

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from dicomweb_client.api import DICOMwebClient

from tests.auth.helpers import Tokens, auth_settings
from tests.log_hygiene import collect_file
from tests.ports import free_port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def kill(self) -> None:
        """SIGKILL the whole process group (uvicorn and its workers): a crash, not a shutdown."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM the process group and wait for a clean shutdown (SIGKILL after 15 s)."""
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def server_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(
        LIGHTBOX_DATA_DIR=str(data_dir),
        LIGHTBOX_DATABASE_URL=database_url,
        LIGHTBOX_AUTO_MIGRATE="true",
        LIGHTBOX_LOG_LEVEL="warning",
        # off for the tests of other things (crashes, deadlines, memory); dicomweb_server and
        # tests/auth run servers with it on
        LIGHTBOX_AUTH__ENABLED="false",
        # the DIMSE listener would bind 11112 in every test server; tests of DIMSE with serve
        # turn it on with a port of their own
        LIGHTBOX_DIMSE__ENABLED="false",
    )
    env.update(extra)
    return env


def add_admin(env: dict[str, str], password: str, name: str = "admin") -> None:
    """An administrator made as the first start says to: ``lightbox user add NAME --role admin
    --password-stdin``."""
    subprocess.run(
        [sys.executable, "-m", "app", "user", "add", name, "--role", "admin", "--password-stdin"],
        env=env,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=180,  # imports the services and hashes with argon2id: slow on a loaded machine
        check=True,
    )


@contextmanager
def running_server(
    env: dict[str, str],
    *,
    port: int | None = None,
    args: Sequence[str] = (),
    tls_ca: Path | None = None,
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[Server]:
    """Start the server, wait until /readyz answers 200, stop it afterwards.

    ``args`` go to ``lightbox serve``; with ``tls_ca`` the server is reached over https and its
    certificate checked against that CA file. ``preexec_fn`` runs in the child before the server
    starts (resource limits).
    """
    port = port or free_port()
    log = Path(env["LIGHTBOX_DATA_DIR"]).parent / f"server-{port}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)),
                *args,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
    server = Server(process, port, log, "https" if tls_ca else "http")
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=str(tls_ca)) if tls_ca else True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
            try:
                ready = httpx.get(f"{server.url}/readyz", timeout=1, verify=verify)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not become ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
        collect_file(log)  # looked through for patient names and tokens (tests/log_hygiene.py)


@dataclass
class DicomwebServer:
    """A running server with access control on, a token with every scope, and a
    dicomweb-client that sends it."""

    server: Server
    database_url: str
    data_dir: Path
    token: str
    client: DICOMwebClient

    @property
    def dicomweb(self) -> str:
        """The DICOMweb base URL."""
        return self.server.dicomweb

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def http(self) -> httpx.Client:
        """An httpx client sending the token (for what dicomweb-client has no method for)."""
        return httpx.Client(headers=self.headers, timeout=30)


@contextmanager
def dicomweb_server(database_url: str, data_dir: Path, **env: str) -> Iterator[DicomwebServer]:
    """A server on ``database_url`` with ``env`` added to its settings, as
    :class:`DicomwebServer`; stopped afterwards."""
    port = free_port()
    settings = server_env(
        data_dir,
        database_url,
        # dicomweb-client sends "Host: 127.0.0.1" without the port, so say where we are reached
        LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}/dicom-web",
        **env,
    )
    settings.pop("LIGHTBOX_AUTH__ENABLED")  # the production default: on
    with running_server(settings, port=port) as server:
        # signed with the key the server created on its first start, as `lightbox token create`
        token = Tokens(auth_settings(database_url, data_dir)).make(subject="e2e", ttl=3600)
        client = DICOMwebClient(server.dicomweb, headers={"Authorization": f"Bearer {token}"})
        yield DicomwebServer(server, database_url, data_dir, token, client)
