"""``lightbox import`` and ``lightbox export`` as the commands run: killed midway and run again
(nothing lost, nothing twice), into a remote server by STOW-RS, a zip bomb and large files in
bounded memory, an export as a ZIP file and as a directory, of an unknown or deleted study.
"""

import asyncio
import io
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydicom import dcmread
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from app.index.models import Instance
from app.services.container import open_services
from tests.api.test_wado_archive import dcmtk_accepts
from tests.conftest import make_settings
from tests.e2e.server import DicomwebServer, server_env
from tests.factories import make_instance, streamed_head
from tests.media import read_fileset

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MIB = 16


def _env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    env = server_env(data_dir, database_url, **extra)
    env["PYTHONPATH"] = str(ROOT)
    return env


def _cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def _tree(root: Path, count: int, study: str, **overrides: object) -> list[bytes]:
    root.mkdir(parents=True, exist_ok=True)
    files = []
    for index in range(count):
        raw = make_instance(StudyInstanceUID=study, InstanceNumber=index + 1, **overrides)
        (root / f"{index:05d}.dcm").write_bytes(raw)
        files.append(raw)
    return files


async def _index_state(database_url: str, data_dir: Path) -> tuple[int, list[str], list[str]]:
    """(instances, missing blobs, blobs whose hash differs) of the index and store."""
    async with open_services(make_settings(database_url, data_dir)) as services:
        async with services.db.read() as conn:
            count = (await conn.execute(select(func.count()).select_from(Instance))).scalar_one()
        report = await services.maintenance.fsck(verify_hashes=True)
    return int(count), list(report.missing_blobs), list(report.hash_mismatches)


def _journal_rows(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with sqlite3.connect(path) as conn:
            return int(conn.execute("SELECT count(*) FROM done").fetchone()[0])
    except sqlite3.OperationalError:  # the table is being made
        return 0


def _wait_for_a_commit(process: "subprocess.Popen[Any]", journal: Path) -> None:
    """Until the running import has journaled its first stored files (or ended)."""
    deadline = time.monotonic() + 120
    while _journal_rows(journal) == 0 and process.poll() is None:
        assert time.monotonic() < deadline, "no instance committed in time"
        time.sleep(0.01)


def _is_worker(process: psutil.Process) -> bool:
    try:
        return any("spawn_main" in part for part in process.cmdline())
    except psutil.Error:  # gone already
        return False


def test_an_import_killed_midway_and_run_again(fresh_database_url: str, tmp_path: Path) -> None:
    """SIGKILL once the first instances are committed; the second run completes the import:
    every file's instance is in the index exactly once, every blob whole. The import runs in
    two worker processes, which die with it (none goes on writing on its own)."""
    data_dir = tmp_path / "data"
    env = _env(fresh_database_url, data_dir)
    count = 600
    _tree(tmp_path / "tree", count, generate_uid(), rows=32, columns=32)
    journal = tmp_path / "journal.sqlite"
    args = ["import", str(tmp_path / "tree"), "--journal", str(journal), "--jobs", "2"]
    args += ["--processes", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_a_commit(process, journal)
        children = psutil.Process(process.pid).children()  # and multiprocessing's tracker
        workers = [child for child in children if _is_worker(child)]
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL, "the import finished before it was killed"
    assert len(workers) == 2
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], "a process outlived the killed import"
    done_first = _journal_rows(journal)
    assert 0 < done_first < count

    second = _cli(env, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"skipped (done in an earlier run): {done_first}" in second.stdout
    stored, missing, damaged = asyncio.run(_index_state(fresh_database_url, data_dir))
    assert stored == count
    assert (missing, damaged) == ([], [])
    assert _journal_rows(journal) == count


def test_ctrl_c_stops_every_process_of_an_import(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group: the command and its workers) ends the
    import with status 130 and one line saying so, no worker's traceback, no process left; the
    next run finishes it. The embedded default index (SQLite), as a first import would be."""
    data_dir = tmp_path / "data"
    env = _env(f"sqlite+aiosqlite:///{data_dir / 'index.db'}", data_dir)
    env.pop("LIGHTBOX_AUTO_MIGRATE", None)  # the embedded default: migrated by the first worker
    count = 600
    _tree(tmp_path / "tree", count, generate_uid(), rows=32, columns=32)
    journal = tmp_path / "journal.sqlite"
    args = ["import", str(tmp_path / "tree"), "--journal", str(journal), "--processes", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a group of its own, as a terminal's foreground job
    )
    try:
        _wait_for_a_commit(process, journal)
        children = psutil.Process(process.pid).children()
        os.killpg(process.pid, signal.SIGINT)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130, out + err
    assert "interrupted: what was stored is kept" in err
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []

    second = _cli(env, *args)
    assert second.returncode == 0, second.stdout + second.stderr
    labels = ("instances stored", "already held", "skipped (done in an earlier run)")
    stored, held, skipped = (_number(second.stdout, label) for label in labels)
    assert skipped > 0
    assert stored + held + skipped == count


def _number(stdout: str, label: str) -> int:
    """The number after ``label:`` in a summary."""
    match = re.search(rf"{re.escape(label)}: (\d+)", stdout)
    assert match is not None, stdout
    return int(match.group(1))


def test_import_into_a_remote_server(dicomweb_server: DicomwebServer, tmp_path: Path) -> None:
    study = generate_uid()
    _tree(tmp_path / "tree", 30, study)
    (tmp_path / "tree" / "notes.txt").write_text("no image")
    with zipfile.ZipFile(tmp_path / "tree" / "more.zip", "w") as archive:
        for index in range(5):
            archive.writestr(f"{index}.dcm", make_instance(StudyInstanceUID=study))
    # no local index is opened: a database URL that cannot be opened shows it
    env = _env("postgresql+asyncpg://nobody@127.0.0.1:1/none", tmp_path / "client")
    url = dicomweb_server.dicomweb
    report = tmp_path / "report.jsonl"
    common = ["--journal", str(tmp_path / "j.sqlite"), "--report", str(report)]

    refused = _cli(env, "import", str(tmp_path / "tree"), "--to", url, "--token", "nope", *common)
    assert refused.returncode == 2
    assert "refused the token" in refused.stderr

    ran = _cli(
        env,
        "import",
        str(tmp_path / "tree"),
        "--to",
        url,
        "--token",
        dicomweb_server.token,
        *common,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "instances stored: 35" in ran.stdout
    assert "notes.txt" in report.read_text()
    with dicomweb_server.http() as http:
        found = http.get(f"{url}/studies/{study}/instances", params={"limit": 100})
    assert found.status_code == 200
    assert len(found.json()) == 35

    again = _cli(
        env,
        "import",
        str(tmp_path / "tree"),
        "--to",
        url,
        "--token",
        dicomweb_server.token,
        *common,
    )
    assert again.returncode == 0
    assert "skipped (done in an earlier run): 31" in again.stdout  # 30 files and the archive


def _peak_rss_kib(env: dict[str, str], *args: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run the command in a process that reports its own peak RSS (KiB) when it exits."""
    code = (
        "import resource, runpy, sys\n"
        f"sys.argv = ['lightbox', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_module('app', run_name='__main__')\n"
        "finally:\n"
        "    sys.stderr.write(f'PEAK {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n')\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600, cwd=ROOT
    )
    peak = next(line for line in ran.stderr.splitlines() if line.startswith("PEAK "))
    return int(peak.split()[1]), ran


def _big_instance(path: Path, size: int) -> None:
    """A PS3.10 file with ``size`` bytes of pixel data, written without holding it."""
    side = 1024
    frames = size // (side * side * 2)
    with path.open("wb") as out:
        out.write(streamed_head(frames * side * side * 2, rows=side, columns=side, frames=frames))
        chunk = bytes(4 << 20)
        for _ in range(frames * side * side * 2 // len(chunk)):
            out.write(chunk)


def test_a_zip_bomb_and_large_files_in_bounded_memory(tmp_path: Path) -> None:
    """A member inflating to 512 MiB (1 MiB compressed), one whose headers say 1,000 bytes, and
    two instances of 48 MiB: the import's peak RSS stays within 64 MiB of a one-file import."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    env = _env(database, tmp_path / "data", LIGHTBOX_LIMITS__MAX_INSTANCE_BYTES=str(64 << 20))
    small = tmp_path / "small"
    _tree(small, 1, generate_uid())
    baseline, ran = _peak_rss_kib(env, "import", str(small))
    assert ran.returncode == 0, ran.stderr

    tree = tmp_path / "tree"
    tree.mkdir()
    head = make_instance()
    with (
        zipfile.ZipFile(tree / "bomb.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as bomb,
        bomb.open("huge.dcm", "w", force_zip64=True) as member,
    ):
        member.write(head)
        zeros = bytes(8 << 20)
        for _ in range(64):
            member.write(zeros)
    assert (tree / "bomb.zip").stat().st_size < 4 << 20
    for index in (0, 1):
        _big_instance(tree / f"big{index}.dcm", 48 << 20)
    report = tmp_path / "report.csv"
    peak, ran = _peak_rss_kib(env, "import", str(tree), "--report", str(report))
    assert ran.returncode == 1, ran.stdout + ran.stderr  # the bomb is refused
    assert "instances stored: 2" in ran.stdout
    assert "zip bomb" in report.read_text()
    assert (peak - baseline) < 64 << 10, f"peak {peak >> 10} MiB, baseline {baseline >> 10} MiB"


def test_export_as_zip_and_directory(fresh_database_url: str, tmp_path: Path) -> None:
    env = _env(fresh_database_url, tmp_path / "data")
    study = generate_uid()
    files = _tree(tmp_path / "tree", 5, study)
    assert _cli(env, "import", str(tmp_path / "tree")).returncode == 0

    as_zip = _cli(env, "export", "--study", study, "--out", str(tmp_path / "out.zip"))
    assert as_zip.returncode == 0, as_zip.stderr
    assert "exported 5 instances" in as_zip.stdout
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        assert archive.testzip() is None
        archive.extractall(tmp_path / "unzipped")
    assert not (tmp_path / "out.zip.partial").exists()

    as_dir = _cli(env, "export", "--study", study, "--out", str(tmp_path / "media"))
    assert as_dir.returncode == 0, as_dir.stderr
    originals = {dcmread(io.BytesIO(raw)).SOPInstanceUID: raw for raw in files}
    for root in (tmp_path / "unzipped", tmp_path / "media"):
        dcmtk_accepts(root / "DICOMDIR", images=5)
        with read_fileset(root / "DICOMDIR") as fileset:
            assert {i.SOPInstanceUID for i in fileset} == set(originals)
            for instance in fileset:
                assert Path(instance.path).read_bytes() == originals[instance.SOPInstanceUID]

    again = _cli(env, "export", "--study", study, "--out", str(tmp_path / "media"))
    assert again.returncode == 1
    assert "not an empty directory" in again.stderr

    missing = generate_uid()
    unknown = _cli(env, "export", "--study", missing, "--out", str(tmp_path / "u.zip"))
    assert unknown.returncode == 1
    assert "(404)" in unknown.stderr
    assert not (tmp_path / "u.zip").exists()

    # audited as retrieves by the operating-system user
    rows = asyncio.run(_retrieves(fresh_database_url, tmp_path / "data", [study, missing]))
    assert [(r["outcome"], r["status"], r["count"]) for r in rows[study]] == [
        ("success", 200, 5)
    ] * 2
    assert [(r["outcome"], r["status"]) for r in rows[missing]] == [("failure", 404)]
    assert all(str(r["actor"]).startswith("cli:") for r in rows[study] + rows[missing])


async def _retrieves(
    database_url: str, data_dir: Path, studies: list[str]
) -> dict[str, list[dict[str, object]]]:
    from app.index.audit.events import AuditFilter

    found: dict[str, list[dict[str, object]]] = {}
    async with open_services(make_settings(database_url, data_dir)) as services:
        for study in studies:
            rows, _ = await services.audit.search(
                AuditFilter(study_uid=study, action="retrieve"), limit=10, offset=0
            )
            found[study] = rows
    return found


def test_export_of_a_deleted_study(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    env = _env(database, tmp_path / "data")
    study = generate_uid()
    _tree(tmp_path / "tree", 2, study)
    assert _cli(env, "import", str(tmp_path / "tree")).returncode == 0

    async def delete() -> None:
        async with open_services(make_settings(database, tmp_path / "data")) as services:
            from app.dicom.target import Target

            await services.delete.delete(Target(study))

    asyncio.run(delete())
    gone = _cli(env, "export", "--study", study, "--out", str(tmp_path / "g.zip"))
    assert gone.returncode == 1
    assert "(410)" in gone.stderr


def test_zip_export_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 384 MiB study retrieved as a ZIP from a server: its RSS stays bounded."""
    from tests.e2e.server import running_server
    from tests.e2e.test_wado_memory import RssSampler

    database = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    env = _env(database, tmp_path / "data")
    tree = tmp_path / "tree"
    tree.mkdir()
    study = generate_uid()
    side, frames = 1024, 24  # 48 MiB each
    series = generate_uid()
    for index in range(8):
        with (tree / f"{index}.dcm").open("wb") as out:
            out.write(
                streamed_head(
                    frames * side * side * 2,
                    rows=side,
                    columns=side,
                    frames=frames,
                    StudyInstanceUID=study,
                    SeriesInstanceUID=series,
                    InstanceNumber=index + 1,
                )
            )
            for _ in range(frames * side * side * 2 // (4 << 20)):
                out.write(os.urandom(4 << 20))
    imported = _cli(env, "import", str(tree))
    assert imported.returncode == 0, imported.stdout + imported.stderr

    with running_server(env) as server:
        idle = RssSampler(server.process.pid)._rss()
        received = 0
        with (
            RssSampler(server.process.pid) as sampler,
            httpx.stream(
                "GET",
                f"{server.dicomweb}/studies/{study}",
                headers={"Accept": "application/zip"},
                timeout=300,
            ) as stream,
        ):
            assert stream.status_code == 200
            for chunk in stream.iter_raw(1 << 20):
                received += len(chunk)
    assert received > 8 * frames * side * side * 2
    assert sampler.peak <= 300 << 20, f"peak {sampler.peak >> 20} MiB"
    assert sampler.peak - idle <= 96 << 20, f"peak {sampler.peak >> 20}, idle {idle >> 20} MiB"
