"""In-process CPU cost of access control + audit per request (issue 6), and of the metrics and
the JSON access log (issue 23), without the network.

One process, one throwaway PostgreSQL database (on ``--server``), a few small stored studies, and
one app per mode on the same services: ``on`` (auth + audit, the production default), ``off``
(neither), ``auth`` or ``audit`` (one of them), all four without metrics and access log; and
``observed``: ``on`` plus the metrics (prometheus-client in multiprocess mode, as ``lightbox
serve`` runs it: this script sets a directory of its own before importing the app) and the
access log in JSON lines at INFO (written to /dev/null through the process's handler). The
ASGI apps are called directly (no HTTP client,
no sockets) for a QIDO study search and for ``/frames/1``, in blocks of ``--block`` requests that
alternate between the modes, with ``time.process_time()`` around each block. The audit writer
runs on the same event loop and its queue is flushed inside the block, so its share is counted.
Interleaving the modes in small blocks keeps a noisy neighbour from favouring one of them.

    .venv/bin/python bench/run.py overhead inprocess [--requests 3000] [--block 100] [--mode off on]
    .venv/bin/python bench/run.py overhead inprocess --mode on observed --base on

Prints CPU microseconds per request per mode and each mode's difference from ``--base``
(``off``). PostgreSQL's own CPU (index queries, audit inserts) is not counted: it is another
process.
"""

# ruff: noqa: E402 (the metrics directory must be named before the app is imported)
import argparse
import asyncio
import atexit
import cProfile
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: app, tests
# the metrics as lightbox serve keeps them (one file per process), set before the app is imported
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="lightbox-bench-metrics-")
atexit.register(shutil.rmtree, os.environ["PROMETHEUS_MULTIPROC_DIR"], True)

import httpx
from asgi_get import asgi_get
from sqlalchemy.engine import make_url

from app.auth.keys import LocalSigningKey
from app.auth.verify import TokenIssuer
from app.config import AuthSettings, MetricsSettings, Settings
from app.index import migrate
from app.logs import configure_logging
from app.main import create_app
from app.services.container import open_services
from tests import pg
from tests.factories import make_instance, multipart, stow_headers

ROOT = "/dicom-web"
#: mode -> (access control and audit, metrics and the access log)
MODES = {
    "on": ({"enabled": True, "audit_enabled": True}, False),
    "off": ({"enabled": False, "audit_enabled": False}, False),
    "auth": ({"enabled": True, "audit_enabled": False}, False),
    "audit": ({"enabled": False, "audit_enabled": True}, False),
    "observed": ({"enabled": True, "audit_enabled": True}, True),
}


def settings_for(mode: str, database_url: str, data_dir: Path) -> Settings:
    auth, observed = MODES[mode]
    return Settings(
        database_url=database_url,
        data_dir=data_dir,
        storage_url=(data_dir / "blobs").as_uri(),
        auto_migrate=False,
        db_pool_size=4,
        log_level="info",
        log_format="json",
        access_log=observed,
        metrics=MetricsSettings(enabled=observed),
        auth=AuthSettings(**auth),
    )


async def measure(
    args: argparse.Namespace, database_url: str, data_dir: Path
) -> dict[str, dict[str, list[float]]]:
    """Per mode and request kind: CPU microseconds per request of each block."""
    key, _ = LocalSigningKey.load_or_create(data_dir)
    token = TokenIssuer(key, "lightbox", "lightbox").issue("bench", ["read", "write"], 3600)
    auth = [(b"authorization", f"Bearer {token}".encode())]
    results: dict[str, dict[str, list[float]]] = {m: {"qido": [], "frames": []} for m in args.mode}
    async with open_services(settings_for("on", database_url, data_dir)) as services:
        apps = {
            m: create_app(settings_for(m, database_url, data_dir), services=services)
            for m in args.mode
        }
        patient = f"PID-{time.monotonic_ns() % 10**9}"
        frame = ""
        transport = httpx.ASGITransport(
            app=create_app(settings_for("off", database_url, data_dir), services=services)
        )
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            for i in range(args.studies):
                response = await http.post(
                    f"{ROOT}/studies",
                    content=multipart([make_instance(PatientID=patient, rows=64, columns=64)]),
                    headers=stow_headers(),
                )
                assert response.status_code == 200, response.text
                if i == 0:
                    stored = response.json()
                    url = stored["00081199"]["Value"][0]["00081190"]["Value"][0]
                    frame = url[url.index(ROOT) :] + "/frames/1"
        requests: dict[str, tuple[str, bytes, list[tuple[bytes, bytes]]]] = {
            "qido": (
                f"{ROOT}/studies",
                f"PatientID={patient}".encode(),
                [(b"accept", b"application/dicom+json"), *auth],
            ),
            "frames": (
                frame,
                b"",
                [(b"accept", b"multipart/related; type=application/octet-stream"), *auth],
            ),
        }

        async def block(app: Any, name: str, n: int) -> float:
            path, query, headers = requests[name]
            started = time.process_time()
            for _ in range(n):
                status, _ = await asgi_get(app, path, query=query, headers=headers)
            await services.audit.flush()
            assert status == 200, (name, status)
            return (time.process_time() - started) / n * 1e6

        # every record to /dev/null, as JSON lines: the cost of writing them, not of a terminal
        devnull = open(os.devnull, "w")  # noqa: SIM115, ASYNC230 (kept open, /dev/null)
        configure_logging("info", "json", stream=devnull, force=True)
        for app in apps.values():  # warm-up, unmeasured
            for name in requests:
                await block(app, name, 50)
        profile = cProfile.Profile() if args.profile else None
        for _ in range(max(1, args.requests // args.block)):
            for name in requests:
                for mode, app in apps.items():
                    if profile is not None and mode == args.mode[-1]:
                        profile.enable()
                    results[mode][name].append(await block(app, name, args.block))
                    if profile is not None:
                        profile.disable()
        if profile is not None:
            pstats.Stats(profile).dump_stats(args.profile)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000, help="per mode and request kind")
    parser.add_argument("--block", type=int, default=100, help="requests per timed block")
    parser.add_argument("--studies", type=int, default=5, help="studies the search finds")
    parser.add_argument("--mode", nargs="+", default=["off", "on"], choices=list(MODES))
    parser.add_argument("--base", default="off", choices=list(MODES), help="compared against")
    parser.add_argument("--profile", help="write a cProfile of the last mode's blocks here")
    parser.add_argument("--server", default=pg.DEFAULT_SERVER, help="PostgreSQL server URL")
    args = parser.parse_args()
    with pg.throwaway_database(make_url(args.server)) as url, tempfile.TemporaryDirectory() as tmp:
        asyncio.run(migrate.upgrade(url))
        results = asyncio.run(measure(args, url, Path(tmp)))
    summary: dict[str, dict[str, float]] = {}
    for mode, kinds in results.items():
        summary[mode] = {name: statistics.mean(v) for name, v in kinds.items()}
        print(
            f"{mode:>5}: "
            + ", ".join(
                f"{name} {statistics.mean(v):.0f} us/req (median block {statistics.median(v):.0f})"
                for name, v in kinds.items()
            )
        )
    base = args.base
    if base in summary:
        for mode in summary:
            if mode == base:
                continue
            for name in ("qido", "frames"):
                # paired blocks (same moment): the spread of the differences says how sure this is
                diffs = [
                    a - b for a, b in zip(results[mode][name], results[base][name], strict=True)
                ]
                spread = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
                on, off = summary[mode][name], summary[base][name]
                print(
                    f"{name} {mode} - {base} = {on - off:.0f} +- {spread:.0f} us/req, "
                    f"overhead {100 * (on - off) / off:+.1f}%"
                )


if __name__ == "__main__":
    main()
