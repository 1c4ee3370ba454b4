"""``lightbox dimse`` alone, and the DIMSE listener that ``lightbox serve`` runs beside HTTP:
one child process (also with several HTTP workers), stopped with serve, off when disabled."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from app.cli.dimse import exposure_warning, start_child
from app.config import DimseSettings, Settings
from tests.dimse.conftest import calling_ae, dcmtk, dimse_port, http_port
from tests.e2e.server import running_server, server_env


def _echo(port: int) -> subprocess.CompletedProcess[str]:
    return dcmtk("echoscu", "-aet", calling_ae(), "-aec", "LIGHTBOX", "127.0.0.1", str(port))


def _env(tmp_path: Path, port: int) -> dict[str, str]:
    env = server_env(tmp_path / "data", f"sqlite+aiosqlite:///{tmp_path / 'index.db'}")
    env.update(LIGHTBOX_DIMSE__ENABLED="true", LIGHTBOX_DIMSE__PORT=str(port))
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    return env


def _wait_listening(port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the DIMSE listener did not start")


def _closed(port: int, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.1)
    return False


def test_lightbox_dimse_runs_alone_and_stops_when_its_parent_dies(tmp_path: Path) -> None:
    """``lightbox dimse``: serves C-ECHO; started by a serve (``--parent``) that dies, it stops
    on its own rather than keep the port."""
    port = dimse_port()
    parent = subprocess.Popen(["sleep", "300"])
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app",
            "dimse",
            "--ae-title",
            "LIGHTBOX",
            "--parent",
            str(parent.pid),
        ],
        env=_env(tmp_path, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_listening(port, process)
        done = _echo(port)
        assert done.returncode == 0, done.stdout
    finally:
        parent.kill()
        parent.wait()
    try:
        output = process.communicate(timeout=60)[0].decode()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert f"DIMSE LIGHTBOX at 127.0.0.1:{port}" in output
    assert _closed(port)


def test_serve_runs_one_dimse_listener_beside_its_workers_and_stops_it(tmp_path: Path) -> None:
    port = dimse_port()
    with running_server(_env(tmp_path, port), port=http_port(), args=["--workers", "2"]) as server:
        _wait_listening(port)
        done = _echo(port)
        assert done.returncode == 0, done.stdout
        children = _children(server.process.pid)
        assert sum("app dimse" in c for c in children.values()) == 1, children
        os.kill(server.process.pid, signal.SIGTERM)  # serve alone: it stops its child
        server.process.wait(60)
        assert _closed(port)
        assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in children)


def test_serve_stops_when_dimse_cannot_listen(tmp_path: Path) -> None:
    port = dimse_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        done = subprocess.run(
            [sys.executable, "-m", "app", "serve", "--port", str(http_port())],
            env=_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=180,
        )
    assert done.returncode == 3, done.stdout + done.stderr
    assert "DIMSE could not start: [Errno 98] Address already in use" in done.stderr
    assert "DIMSE listener could not start" in done.stderr


def test_serve_starts_no_listener_when_dimse_is_disabled(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, dimse=DimseSettings(enabled=False))
    assert start_child(settings) is None


def test_exposure_warning_when_listening_beyond_loopback_unguarded() -> None:
    assert exposure_warning(DimseSettings(host="127.0.0.1")) is None
    assert exposure_warning(DimseSettings(host="::1")) is None
    warning = exposure_warning(DimseSettings(host="0.0.0.0"))
    assert warning is not None
    assert "ANY calling AE" in warning
    guarded = DimseSettings(host="10.1.2.3", allowed_peers=[{"address": "10.1.0.0/16"}])
    assert exposure_warning(guarded) is None


def _children(pid: int) -> dict[int, str]:
    """The command lines of ``pid``'s child processes."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[int(entry.name)] = cmdline
    return found


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
