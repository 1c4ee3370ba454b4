"""Orthanc's own importer, the way its ``ImportDicomFiles.py`` sample does it (one REST
``POST /instances`` per file), with a few files in flight: the peer figure for ``lightbox import``.

    orthanc_upload.py --url http://127.0.0.1:8042 --dataset DIR [--max N] [--concurrency 4]

Prints one JSON line: instances, failures, seconds, instances/s.
"""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import httpx


async def upload(url: str, files: list[Path], concurrency: int) -> tuple[int, int]:
    queue: asyncio.Queue[Path] = asyncio.Queue()
    for path in files:
        queue.put_nowait(path)
    stored = failed = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal stored, failed
        while not queue.empty():
            path = queue.get_nowait()
            response = await client.post(f"{url}/instances", content=path.read_bytes())
            if response.status_code == 200:
                stored += 1
            else:
                failed += 1

    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return stored, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--max", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    files = sorted(Path(args.dataset, "dicom").rglob("*.dcm"))
    if args.max:
        files = files[: args.max]
    started = time.perf_counter()
    stored, failed = asyncio.run(upload(args.url.rstrip("/"), files, args.concurrency))
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "instances": stored,
                "failed": failed,
                "seconds": round(seconds, 2),
                "instances_per_s": round(stored / seconds, 1),
            }
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
