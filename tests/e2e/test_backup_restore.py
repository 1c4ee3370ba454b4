"""Backup and restore as docs/operations.md says it (issue 23 point 7): the index (pg_dump, or
SQLite's online backup API), the blob store and the signing key are copied; restored into an
empty database and new directories, ``lightbox fsck`` and ``lightbox audit verify`` pass, every
instance is served byte-identical, tokens issued before still work (the key) and a revoked one
stays revoked (the registry)."""

import asyncio
import io
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from pydicom import dcmread
from sqlalchemy.engine import make_url

from app.config import Settings
from app.index import migrate
from app.main import create_app
from app.services.container import open_services
from app.services.tokens import IssuedToken
from tests import pg
from tests.auth.helpers import auth_settings
from tests.corpus import corpus_path
from tests.factories import make_dataset, multipart, stow_headers, to_bytes
from tests.multipart import parse_multipart

ROOT = "/dicom-web"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
#: real files besides the synthetic ones: compressed (JPEG 2000, RLE), multi-frame
REAL = (
    "JPEG2000.dcm",
    "emri_small_RLE.dcm",
    "MR_small.dcm",
    "SC_rgb_rle_2frame.dcm",
    "CT_small.dcm",
)


def _instances() -> list[bytes]:
    made = []
    for study in range(3):
        study_uid = f"2.25.{1000 + study}{os.getpid()}"
        for n in range(4):
            ds = make_dataset(
                frames=2 if n == 0 else 1,
                StudyInstanceUID=study_uid,
                PatientID=f"P{study}",
                PatientName="Müller^Jürgen" if study == 0 else "Doe^Jane",
                InstanceNumber=n + 1,
            )
            made.append(to_bytes(ds))
    return made + [corpus_path(name).read_bytes() for name in REAL]


@asynccontextmanager
async def _client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An app on ``settings`` as they are (the index is not emptied: it is the restored one)."""
    async with open_services(settings) as services:
        app = create_app(settings, services=services)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            http.services = services  # type: ignore[attr-defined]
            yield http


async def _served(http: httpx.AsyncClient, token: str) -> dict[str, bytes]:
    """Every instance the server holds (found by QIDO-RS), as retrieved in its stored syntax."""
    auth = {"Authorization": f"Bearer {token}"}
    found = await http.get(f"{ROOT}/instances", params={"limit": 1000}, headers=auth)
    assert found.status_code == 200, found.text
    out = {}
    for item in found.json():
        uids = [item[tag]["Value"][0] for tag in ("0020000D", "0020000E", "00080018")]
        url = f"{ROOT}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
        answer = await http.get(url, headers={**auth, "Accept": AS_STORED})
        assert answer.status_code == 200, (url, answer.text)
        _type, _syntax, parts = parse_multipart(answer)
        [part] = parts
        out[uids[2]] = part.payload
    return out


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIGHTBOX_")}
    env.update(
        LIGHTBOX_DATABASE_URL=settings.resolved_database_url(),
        LIGHTBOX_STORAGE_URL=settings.resolved_storage_url(),
        LIGHTBOX_DATA_DIR=str(settings.data_dir),
        LIGHTBOX_AUTO_MIGRATE="false",
    )
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


async def _fill(
    source: Settings, sent: list[bytes]
) -> tuple[IssuedToken, IssuedToken, dict[str, bytes]]:
    """Two tokens (one revoked), the instances stored; what the server serves then."""
    async with _client(source) as http:
        tokens = http.services.tokens  # type: ignore[attr-defined]
        keeper = await tokens.issue("cli", "keeper", ["read", "write"], 3600)
        revoked = await tokens.issue("cli", "gone", ["read"], 3600)
        await tokens.revoke(revoked.record.jti, by="admin", reason="before the backup")
        stored = await http.post(
            f"{ROOT}/studies",
            content=multipart(sent),
            headers={**stow_headers(), "Authorization": f"Bearer {keeper.token}"},
        )
        assert stored.status_code == 200, stored.text
        before = await _served(http, keeper.token)
    return keeper, revoked, before


def _libpq(url: str) -> str:
    """The SQLAlchemy URL as pg_dump and pg_restore take it."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def test_backup_and_restore(fresh_database_url: str, tmp_path: Path) -> None:
    # synchronous: the PostgreSQL helpers run their own event loops
    source_url = fresh_database_url
    asyncio.run(migrate.upgrade(source_url))
    source = auth_settings(source_url, tmp_path / "source")
    sent = _instances()
    keeper, revoked, before = asyncio.run(_fill(source, sent))
    assert len(before) == len(sent)
    # what was sent is what is served (a file without a preamble gains one, nothing else)
    for raw in sent:
        sop = str(dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID)
        assert before[sop].endswith(raw[128:] if raw[128:132] == b"DICM" else raw), sop

    # --- backup: the index, the blobs, the signing key -----------------------------------------
    backup = tmp_path / "backup"
    backup.mkdir()
    key = source.data_dir / "auth" / "signing-key.pem"
    if source.is_sqlite:
        # the online backup API: a consistent copy while servers write
        database = make_url(source_url).database
        assert database is not None
        with sqlite3.connect(database) as live, sqlite3.connect(backup / "index.db") as copy:
            live.backup(copy)
    else:
        dumped = subprocess.run(
            ["pg_dump", "--format=custom", f"--file={backup / 'index.dump'}", _libpq(source_url)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert dumped.returncode == 0, dumped.stderr
    shutil.copytree(source.data_dir / "blobs", backup / "blobs")
    shutil.copy2(key, backup / "signing-key.pem")
    # the originals are gone (a lost machine)
    shutil.rmtree(source.data_dir)

    # --- restore into an empty database and new directories -------------------------------------
    def restore_and_serve(target_url: str) -> None:
        target = auth_settings(target_url, tmp_path / "restored")
        (target.data_dir / "auth").mkdir(parents=True)
        shutil.copy2(backup / "signing-key.pem", target.data_dir / "auth" / "signing-key.pem")
        assert (target.data_dir / "auth" / "signing-key.pem").stat().st_mode & 0o077 == 0
        shutil.copytree(backup / "blobs", target.data_dir / "blobs")

        fsck = _cli(target, "fsck")
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
        assert f"rows checked {len(sent)}" in fsck.stdout
        assert "OK" in fsck.stdout
        chain = _cli(target, "audit", "verify")
        assert chain.returncode == 0, chain.stdout + chain.stderr
        assert "OK: the chain is intact" in chain.stdout

        async def serve() -> None:
            async with _client(target) as http:
                assert await _served(http, keeper.token) == before
                refused = await http.get(
                    f"{ROOT}/studies", headers={"Authorization": f"Bearer {revoked.token}"}
                )
                assert refused.status_code == 401
                assert "revoked" in refused.json()["detail"]

        asyncio.run(serve())

    if source.is_sqlite:
        restored = tmp_path / "restored-index.db"
        shutil.copy(backup / "index.db", restored)
        restore_and_serve(f"sqlite+aiosqlite:///{restored}")
        return
    with pg.throwaway_database(make_url(source_url).set(database="postgres")) as empty:
        loaded = subprocess.run(
            [
                "pg_restore",
                "--exit-on-error",
                "--no-owner",
                f"--dbname={_libpq(empty)}",
                str(backup / "index.dump"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert loaded.returncode == 0, loaded.stderr
        restore_and_serve(empty)
