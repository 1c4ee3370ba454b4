"""A PostgreSQL server for the tests: the configured one, the local one, or a private cluster.

Order: ``LIGHTBOX_TEST_DATABASE_URL`` (a server URL; the tests create and drop their own database
on it), else the server at 127.0.0.1:5432 (user ``postgres``, trust auth), else a throwaway
cluster started from the installed binaries as the ``postgres`` user (PostgreSQL refuses root).
When none of these works the tests fail loudly: PostgreSQL is never skipped.
"""

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL, make_url

DEFAULT_SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL is required for the tests but {name} was not found: install the "
            "postgresql package or set LIGHTBOX_TEST_DATABASE_URL"
        )
    return candidates[-1]


def _as_postgres(*args: str) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *args]
    return list(args)


@contextmanager
def private_cluster() -> Iterator[URL]:
    """Start a throwaway cluster on 127.0.0.1 and a free port; stop and remove it afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="lightbox-pg-"))
    data = workdir / "data"
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        _as_postgres(_pg_bin("initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            _pg_bin("pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(workdir / "log"),
            "-w",
            "-o",
            f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield make_url(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres")
    finally:
        subprocess.run(
            _as_postgres(_pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"),
            check=False,
            capture_output=True,
        )
        shutil.rmtree(workdir, ignore_errors=True)


@contextmanager
def server() -> Iterator[URL]:
    """The URL of a PostgreSQL server the tests may create databases on."""
    configured = os.environ.get("LIGHTBOX_TEST_DATABASE_URL")
    if configured:
        yield make_url(configured).set(drivername="postgresql+asyncpg")
        return
    default = make_url(DEFAULT_SERVER)
    if _listening("127.0.0.1", 5432):
        yield default
        return
    with private_cluster() as url:
        yield url


def _admin_command(url: URL, sql: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port or 5432,
            user=url.username or "postgres",
            password=url.password,
            database=url.database or "postgres",
        )
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    # a private event loop: this runs from sync fixtures, outside pytest-asyncio's loop
    asyncio.run(run())


@contextmanager
def throwaway_database(server_url: URL) -> Iterator[str]:
    """Create a uniquely named database on the server; drop it afterwards."""
    name = f"lightbox_test_{uuid.uuid4().hex[:12]}"
    _admin_command(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        for _ in range(3):
            try:
                _admin_command(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except Exception:
                time.sleep(0.5)
