"""Server CPU per request of the retrieve paths, in-process (issues 4 and 5).

Wall-clock timings on a shared 2-core machine are noise; this calls the ASGI app directly (no
HTTP client, no sockets) over an existing data directory and reports the process CPU time per
request (``time.process_time()``, all threads: the index's and the file reads' too), best of 5
loops. Access control is off, so it measures the retrieve paths, not auth and audit.

    .venv/bin/python bench/run.py retrieve cpu --data-dir DIR --study S --series SE --instance I

``DIR`` is a ``LIGHTBOX_DATA_DIR`` holding the instance (e.g. a 512x512 16-bit native image of
a 60-instance study STOWed by ``../shared/bench/load.py stow``); run it against a copy of the
directory, not one a server is using. Paths measured: ``/frames/1``, ``/rendered`` (cached after
warm-up), the instance and the whole study as ``multipart/related``.
"""

import argparse
import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from asgi_get import asgi_get

from app.config import AuthSettings, Settings
from app.main import create_app
from app.services.container import open_services


async def call(app: Any, path: str, accept: str) -> tuple[int, int]:
    """One GET straight into the ASGI app: (status, body length)."""
    return await asgi_get(app, path, headers=[(b"host", b"bench"), (b"accept", accept.encode())])


async def main(args: argparse.Namespace) -> None:
    logging.disable(logging.INFO)
    settings = Settings(
        data_dir=Path(args.data_dir), auto_migrate=False, auth=AuthSettings(enabled=False)
    )
    async with open_services(settings) as services:
        app: Any = create_app(settings, services=services)
        study = f"{settings.dicomweb_root}/studies/{args.study}"
        instance = f"{study}/series/{args.series}/instances/{args.instance}"
        dicom = 'multipart/related; type="application/dicom"'
        cases = [
            (
                "frames/1",
                f"{instance}/frames/1",
                'multipart/related; type="application/octet-stream"',
            ),
            ("rendered", f"{instance}/rendered", "image/jpeg"),
            ("instance", instance, dicom),
            ("study", study, dicom),
        ]
        for name, path, accept in cases:
            loops = args.requests // 25 if name == "study" else args.requests
            for _ in range(20):  # warm-up (and the rendered cache)
                status, size = await call(app, path, accept)
                if status != 200:
                    raise SystemExit(f"{name}: HTTP {status}")
            best = float("inf")
            for _ in range(5):
                start = time.process_time()
                for _ in range(loops):
                    await call(app, path, accept)
                best = min(best, (time.process_time() - start) / loops * 1000)
            print(f"{name:10s} {best:8.3f} ms CPU/request (best of 5 x {loops}) body={size}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--series", required=True)
    parser.add_argument("--instance", required=True)
    parser.add_argument("--requests", type=int, default=500)
    asyncio.run(main(parser.parse_args()))
