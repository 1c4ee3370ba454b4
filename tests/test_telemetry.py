"""The run's metrics directory (:mod:`app.telemetry`): processes write their own files, a scrape
sums them, a dead process's live gauges leave the sums, its counters stay."""

import os
import subprocess
import sys

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app import telemetry
from tests.e2e.server import free_port

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
