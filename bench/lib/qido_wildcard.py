"""Latency of ``PatientName=*abc*`` study searches (the issue's substring target).

Substrings are three letters taken (seeded) from inside the family names of the manifest, so
every query matches something; the expected count is checked against the manifest like
``load.py`` does (case-insensitive on the whole name). Bounded in count and time.

    .venv/bin/python bench/run.py query wildcard --url http://127.0.0.1:8080/dicom-web \\
        --dataset DIR --requests 200 --concurrency 1
"""

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

import httpx


def studies(dataset: Path) -> dict[str, str]:
    """Study UID -> patient name, from ``instances.jsonl``."""
    manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
    names: dict[str, str] = {}
    with (dataset / manifest.get("instances_file", "instances.jsonl")).open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            names.setdefault(row["study_uid"], row["patient_name"])
    return names


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> None:
    names = studies(Path(args.dataset))
    families = sorted({n.split("^")[0] for n in names.values() if n.isascii() and len(n) > 4})
    rng = random.Random(args.seed)
    queries = []
    for _ in range(args.requests):
        family = rng.choice(families)
        start = rng.randrange(0, max(1, len(family) - 3))
        part = family[start : start + 3]
        expected = sum(1 for n in names.values() if part in n.upper())
        queries.append((part, min(expected, args.limit)))
    latencies: list[float] = []
    mismatches = 0
    deadline = time.monotonic() + args.max_seconds
    queue: asyncio.Queue[tuple[str, int]] = asyncio.Queue()
    for item in queries:
        queue.put_nowait(item)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal mismatches
        while not queue.empty() and time.monotonic() < deadline:
            part, expected = queue.get_nowait()
            started = time.perf_counter()
            response = await client.get(
                f"{args.url}/studies",
                params={"PatientName": f"*{part}*", "limit": str(args.limit)},
                headers={"Accept": "application/dicom+json"},
            )
            body = response.content
            latencies.append((time.perf_counter() - started) * 1000)
            found = len(json.loads(body)) if response.status_code == 200 else 0
            if found != expected:
                mismatches += 1

    headers = {"Authorization": f"Bearer {bearer_token(args.bearer)}"} if args.bearer else None
    async with httpx.AsyncClient(timeout=60, headers=headers) as client:
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "concurrency": args.concurrency,
                "p50_ms": round(statistics.median(latencies), 2),
                "p95_ms": round(percentile(latencies, 95), 2),
                "max_ms": round(max(latencies), 2),
                "mismatches": mismatches,
            }
        )
    )


def bearer_token(value: str) -> str:
    """A token given as text or ``@file``."""
    return Path(value[1:]).read_text().strip() if value.startswith("@") else value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--url", required=True, help="DICOMweb root, e.g. http://127.0.0.1:8080/dicom-web"
    )
    ap.add_argument("--dataset", required=True, help="manifest directory")
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--limit", type=int, default=101, help="limit sent with each query (OHIF: 101)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-seconds", type=float, default=120.0)
    ap.add_argument("--bearer", help="bearer token, or @file (Lightbox's auth is on by default)")
    args = ap.parse_args(argv)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
