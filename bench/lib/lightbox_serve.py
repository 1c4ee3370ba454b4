"""A ``lightbox serve`` of the page benchmarks (``pages_list.py``, ``viewer_browser.py``): started
on a free loopback port with its own settings only, waited for until ready, stopped with its
process group; and the signer of its session cookies (with the server's own key, as the sign-in
page signs them)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.auth.factory import build_mapping
from app.auth.keys import LocalSigningKey
from app.auth.sessions import SessionPolicy, SessionSigner
from app.config import AuthSettings

#: how long a server may take to answer /readyz (migrations of a fresh index included)
START_TIMEOUT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def session_signer(data_dir: Path) -> SessionSigner:
    """The session signer of the server of ``data_dir`` (its key is made when absent)."""
    auth = AuthSettings()
    return SessionSigner(
        LocalSigningKey.load_or_create(data_dir)[0],
        issuer=auth.local_issuer,
        audience=auth.audience,
        mapping=build_mapping(auth),
        policy=SessionPolicy(auth.session_idle_seconds, auth.session_absolute_seconds),
    )


@contextmanager
def serving(data_dir: Path, **settings: str) -> Iterator[str]:
    """A ready ``lightbox serve`` of ``data_dir`` (DIMSE off, warnings only, plus ``settings``:
    ``LIGHTBOX_*`` variables), its base URL; its log is ``data_dir/server.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(
        LIGHTBOX_DATA_DIR=str(data_dir),
        LIGHTBOX_LOG_LEVEL="warning",
        LIGHTBOX_DIMSE__ENABLED="false",
        **settings,
    )
    LocalSigningKey.load_or_create(data_dir)  # the server's key: the cookies are signed with it
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "app", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=(data_dir / "server.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the server did not start; see {data_dir / 'server.log'}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
