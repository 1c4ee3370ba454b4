"""The run's metrics directory (:mod:`app.telemetry`): processes write their own files, a scrape
sums them, a dead process's live gauges leave the sums, its counters stay."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app import telemetry
from tests.ports import free_port

_WORKER = """
from prometheus_client import Counter, Gauge
Counter("t_requests", "r").inc({n})
Gauge("t_up", "u", multiprocess_mode="livesum").set(1)
"""


def _values(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_processes_are_summed_and_a_dead_ones_gauges_dropped() -> None:
    with telemetry.run_directory() as path:
        assert os.environ[telemetry.MULTIPROC_ENV] == str(path)
        assert path.is_dir()
        assert not any(path.iterdir())
        pids = []
        for n in (2, 3):
            process = subprocess.Popen([sys.executable, "-c", _WORKER.format(n=n)])
            assert process.wait(30) == 0
            pids.append(process.pid)
        values = _values(telemetry.exposition().decode())
        assert values["t_requests_total"] == 5
        assert values["t_up"] == 2
        telemetry.mark_dead(pids[0])
        values = _values(telemetry.exposition().decode())
        assert values["t_requests_total"] == 5  # what it counted stays counted
        assert values["t_up"] == 1
    assert not path.exists()
    assert telemetry.MULTIPROC_ENV not in os.environ


def test_listener_serves_the_run_without_a_token() -> None:
    with telemetry.run_directory():
        process = subprocess.Popen([sys.executable, "-c", _WORKER.format(n=7)])
        assert process.wait(30) == 0
        port = free_port()
        listener = telemetry.start_listener("127.0.0.1", port)
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        finally:
            listener.stop()
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    assert _values(answer.text)["t_requests_total"] == 7


def test_a_killed_runs_directory_is_swept_by_the_next() -> None:
    """A server killed outright leaves its directory; the next one to start removes it (named
    for a pid that no longer runs), not those of servers still running."""
    script = (
        "import os, sys, time\n"
        "from app import telemetry\n"
        "with telemetry.run_directory() as path:\n"
        "    print(path, flush=True)\n"
        "    time.sleep(60)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    running = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    killed = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
    assert running.stdout is not None
    assert killed.stdout is not None
    try:
        kept = Path(running.stdout.readline().decode().strip())
        left = Path(killed.stdout.readline().decode().strip())
        killed.kill()
        killed.wait(10)
        assert left.is_dir()
        with telemetry.run_directory() as mine:
            assert not left.exists()
            assert kept.is_dir()
            assert mine.name.startswith(f"lightbox-metrics-{os.getpid()}-")
    finally:
        running.kill()
        running.wait(10)
        killed.stdout.close()
        running.stdout.close()
    shutil.rmtree(kept, ignore_errors=True)  # killed as well: not left for the next start
