"""Run ``lightbox serve`` as a real process on 127.0.0.1 for end-to-end tests."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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


def server_env(data_dir: Path, database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(
        LIGHTBOX_DATA_DIR=str(data_dir),
        LIGHTBOX_DATABASE_URL=database_url,
        LIGHTBOX_AUTO_MIGRATE="true",
        LIGHTBOX_LOG_LEVEL="warning",
        # the DICOMweb end-to-end tests run without tokens; tests/auth runs servers with them
        LIGHTBOX_AUTH__ENABLED="false",
    )
    env.update(extra)
    return env


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
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
