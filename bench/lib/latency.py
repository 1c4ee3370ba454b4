"""Server-side latency of one GET, without the harness's response parsing.

``../shared/bench/load.py`` parses and checks every response in Python, which on two cores makes
large answers (a 3 MB series ``/metadata``) client-bound. This measures the same request the way
a viewer's network stack sees it: the body is read and discarded. Bounded in count and time.

    .venv/bin/python bench/run.py retrieve latency --url URL [--url URL ...] --accept TYPE \\
        --requests 200 --concurrency 1 [--bearer @token.txt]

Several ``--url`` values are requested round-robin (e.g. frame 1 of many instances).
"""

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path

import httpx


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(pct / 100 * len(ordered)) - 1))]


async def run(args: argparse.Namespace) -> dict[str, object]:
    headers = {"Accept": args.accept, "Accept-Encoding": "identity"}
    if args.bearer:
        headers["Authorization"] = f"Bearer {args.bearer}"
    urls = args.url
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    received = 0
    deadline = time.monotonic() + args.max_seconds
    counter = iter(range(args.requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal received
        for n in counter:
            if time.monotonic() > deadline:
                return
            started = time.perf_counter()
            async with client.stream("GET", urls[n % len(urls)], headers=headers) as response:
                async for chunk in response.aiter_raw():
                    received += len(chunk)
            latencies.append((time.perf_counter() - started) * 1000)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    async with httpx.AsyncClient(timeout=120) as client:
        for url in urls[: min(len(urls), 5)]:  # warm-up, unmeasured
            await client.get(url, headers=headers)
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(args.concurrency)))
        wall = time.perf_counter() - started
    return {
        "requests": len(latencies),
        "concurrency": args.concurrency,
        "statuses": statuses,
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "max_ms": round(max(latencies), 2),
        "mb_per_s": round(received / wall / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", action="append", required=True)
    parser.add_argument("--accept", default="*/*")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--bearer", help="bearer token, or @file")
    args = parser.parse_args()
    if args.bearer and args.bearer.startswith("@"):
        args.bearer = Path(args.bearer[1:]).read_text().strip()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
