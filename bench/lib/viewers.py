"""Simulated OHIF viewers opening studies: per-request latency and per-viewer study-open time.

Each viewer is a browser tab of OHIF: one HTTP/1.1 client with its own pool of keep-alive
connections (``--connections``, browsers open 6 per host) that, for each study it opens, asks
what OHIF asks when a study opens:

1. the study's series (QIDO-RS ``/studies/{study}/series``);
2. each series' metadata (``/series/{series}/metadata``, all at once: OHIF's lazy study load);
3. one frame per other series (the thumbnails), then every frame of the first series (the one
   shown), ``--in-flight`` at a time, in instance order, as cornerstone's request pool does.

"Study open" is from the QIDO request to the last frame of the shown series (the user can
scroll it all); "first image" ends with its first frame. The viewers start together (each after
a random delay of up to ``--stagger`` s), and open studies one after another with ``--think`` s
between, each viewer a different study, until ``--opens`` each or ``--seconds`` in all. What
the server sends is read and dropped, never parsed beyond the metadata.

It compares process managers and balancing under the same clients: run it against
``lightbox serve --workers N`` (gunicorn's workers: the kernel places connections), against a
revision before the gunicorn change (its own least-connections hand-off), or against HAProxy
``balance leastconn`` in front of single-worker servers (docs/operations.md)::

    bench/run.py retrieve viewers --url http://127.0.0.1:8080/dicom-web --viewers 4 \\
        --seconds 60 --label gunicorn-2w [--bearer @token.txt] [--processes 2] [--out FILE]

Bounded: at most ``--viewers * --opens`` study opens, each request ``--timeout`` s, and the
whole run ``--seconds`` plus one request timeout (an open still under way then is dropped). With
``--processes P`` the viewers are shared among P client processes, so that the client's own CPU
does not bound what is measured (watch the client's CPU on a small machine all the same).
"""

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

DICOM_JSON = "application/dicom+json"
#: what OHIF's DICOMweb data source asks frames in
FRAMES_ACCEPT = "multipart/related; type=application/octet-stream; transfer-syntax=*"
#: the request kinds reported
KINDS = ("qido", "metadata", "thumbnail", "frame")
MAX_VIEWERS = 64


@dataclass
class Samples:
    """What one client process measured (plain data: it crosses processes)."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    statuses: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    received: int = 0
    #: per viewer: study-open and first-image times of each completed open (ms)
    opens: dict[int, list[float]] = field(default_factory=dict)
    first_images: dict[int, list[float]] = field(default_factory=dict)

    def merge(self, other: "Samples") -> None:
        for kind, values in other.latencies.items():
            self.latencies[kind] += values
        for status, count in other.statuses.items():
            self.statuses[status] = self.statuses.get(status, 0) + count
        self.errors += other.errors
        self.received += other.received
        self.opens.update(other.opens)
        self.first_images.update(other.first_images)


def percentile(values: list[float], pct: float) -> float:
    """The nearest-rank percentile.

    >>> percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50), percentile([5.0, 1.0, 3.0, 2.0, 4.0], 95)
    (3.0, 5.0)
    """
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))]


def summary(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50_ms": round(statistics.median(values), 2),
        "p95_ms": round(percentile(values, 95), 2),
        "max_ms": round(max(values), 2),
    }


def _value(item: dict[str, Any], tag: str) -> Any:
    values = item.get(tag, {}).get("Value")
    return values[0] if values else None


class Viewer:
    """One OHIF tab: its connection pool, and the studies it opens."""

    def __init__(self, number: int, args: argparse.Namespace, samples: Samples) -> None:
        self.number = number
        self.args = args
        self.samples = samples
        self.base = args.url.rstrip("/")
        self.headers = {"Accept-Encoding": "identity"}
        if args.bearer:
            self.headers["Authorization"] = f"Bearer {args.bearer}"

    async def _get(
        self, client: httpx.AsyncClient, kind: str, path: str, accept: str, *, keep: bool = False
    ) -> bytes:
        """GET ``path``; the body when ``keep``, else read and dropped."""
        body = bytearray()
        started = time.perf_counter()
        async with client.stream(
            "GET", self.base + path, headers={**self.headers, "Accept": accept}
        ) as response:
            async for chunk in response.aiter_raw():
                self.samples.received += len(chunk)
                if keep:
                    body += chunk
        self.samples.latencies[kind].append((time.perf_counter() - started) * 1000)
        key = f"{kind} {response.status_code}"
        self.samples.statuses[key] = self.samples.statuses.get(key, 0) + 1
        if response.status_code != 200:
            raise RuntimeError(f"{kind} {path}: {response.status_code}")
        return bytes(body)

    async def open_study(self, client: httpx.AsyncClient, study: str) -> tuple[float, float]:
        """Open ``study`` as OHIF does; (study-open, first-image) times in ms."""
        started = time.perf_counter()
        found = orjson.loads(
            await self._get(client, "qido", f"/studies/{study}/series", DICOM_JSON, keep=True)
        )
        # OHIF shows the first series by SeriesNumber
        found.sort(key=lambda item: _value(item, "00200011") or 0)
        series = [s for s in (_value(item, "0020000E") for item in found) if s]
        documents = await asyncio.gather(
            *(
                self._get(
                    client,
                    "metadata",
                    f"/studies/{study}/series/{uid}/metadata",
                    DICOM_JSON,
                    keep=True,
                )
                for uid in series
            )
        )
        frames: list[list[str]] = []  # per series, frame paths in instance order
        for uid, document in zip(series, documents, strict=True):
            instances = sorted(orjson.loads(document), key=lambda i: _value(i, "00200013") or 0)
            paths = []
            for instance in instances:
                count = int(_value(instance, "00280008") or 1)
                sop = _value(instance, "00080018")
                base = f"/studies/{study}/series/{uid}/instances/{sop}/frames/"
                paths += [f"{base}{n}" for n in range(1, count + 1)]
            frames.append(paths[: self.args.max_frames])
        if not frames or not frames[0]:
            raise RuntimeError(f"study {study}: no frames")
        gate = asyncio.Semaphore(self.args.in_flight)
        first_image = 0.0

        async def fetch(kind: str, path: str) -> None:
            nonlocal first_image
            async with gate:
                await self._get(client, kind, path, FRAMES_ACCEPT)
            if kind == "frame" and path == frames[0][0]:
                first_image = (time.perf_counter() - started) * 1000

        # thumbnails are asked first (the panel), then the shown series, through one gate
        thumbnails = [paths[len(paths) // 2] for paths in frames[1:] if paths]
        await asyncio.gather(
            *(fetch("thumbnail", p) for p in thumbnails),
            *(fetch("frame", p) for p in frames[0]),
        )
        return (time.perf_counter() - started) * 1000, first_image

    async def run(self, studies: list[str], deadline: float) -> None:
        limits = httpx.Limits(
            max_connections=self.args.connections,
            max_keepalive_connections=self.args.connections,
        )
        rng = random.Random(self.args.seed * 1000 + self.number)
        await asyncio.sleep(rng.uniform(0, self.args.stagger))
        opens = self.samples.opens.setdefault(self.number, [])
        firsts = self.samples.first_images.setdefault(self.number, [])
        async with httpx.AsyncClient(limits=limits, timeout=self.args.timeout) as client:
            for n in range(self.args.opens):
                if time.monotonic() >= deadline:
                    return
                study = studies[(self.number + n * self.args.viewers) % len(studies)]
                try:
                    opened, first = await self.open_study(client, study)
                except (httpx.HTTPError, RuntimeError, ValueError) as exc:
                    self.samples.errors.append(f"viewer {self.number}: {exc!r}"[:300])
                    continue
                opens.append(opened)
                firsts.append(first)
                await asyncio.sleep(self.args.think)


async def _viewers(args: argparse.Namespace, numbers: list[int], studies: list[str]) -> Samples:
    samples = Samples()
    deadline = time.monotonic() + args.seconds
    tasks = [asyncio.create_task(Viewer(n, args, samples).run(studies, deadline)) for n in numbers]
    try:
        async with asyncio.timeout(args.seconds + args.timeout):
            await asyncio.gather(*tasks)
    except TimeoutError:
        samples.errors.append("the run's time bound ended opens still under way (dropped)")
    return samples


def _client_process(job: tuple[argparse.Namespace, list[int], list[str]]) -> Samples:
    args, numbers, studies = job
    return asyncio.run(_viewers(args, numbers, studies))


def discover(args: argparse.Namespace) -> list[str]:
    """The studies to open: ``--study`` values, else the first ``--studies`` the server lists."""
    if args.study:
        return list(args.study)
    headers = {"Accept": DICOM_JSON}
    if args.bearer:
        headers["Authorization"] = f"Bearer {args.bearer}"
    response = httpx.get(
        f"{args.url.rstrip('/')}/studies",
        params={"limit": str(args.studies)},
        headers=headers,
        timeout=args.timeout,
    )
    response.raise_for_status()
    if response.status_code == 204:
        raise SystemExit("the server has no study: store a data set first")
    return [uid for uid in (_value(s, "0020000D") for s in response.json()) if uid]


def _split(numbers: list[int], parts: int) -> Iterator[list[int]]:
    for i in range(parts):
        if chunk := numbers[i::parts]:
            yield chunk


def run(args: argparse.Namespace) -> dict[str, Any]:
    studies = discover(args)
    numbers = list(range(args.viewers))
    started = time.perf_counter()
    if args.processes <= 1:
        samples = asyncio.run(_viewers(args, numbers, studies))
    else:
        jobs = [(args, chunk, studies) for chunk in _split(numbers, args.processes)]
        samples = Samples()
        with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
            for part in pool.map(_client_process, jobs):
                samples.merge(part)
    wall = time.perf_counter() - started
    every_open = [t for times in samples.opens.values() for t in times]
    requests = sum(len(v) for v in samples.latencies.values())
    return {
        "label": args.label,
        "url": args.url,
        "viewers": args.viewers,
        "connections_per_viewer": args.connections,
        "in_flight": args.in_flight,
        "studies": len(studies),
        "wall_s": round(wall, 2),
        "requests": requests,
        "requests_per_s": round(requests / wall, 1),
        "mb_per_s": round(samples.received / wall / 1e6, 1),
        "statuses": samples.statuses,
        "errors": len(samples.errors),
        "first_errors": samples.errors[:5],
        "per_request": {kind: summary(samples.latencies[kind]) for kind in KINDS},
        "study_open": summary(every_open),
        "first_image": summary([t for times in samples.first_images.values() for t in times]),
        "per_viewer_open_p50_ms": {
            str(n): round(statistics.median(times), 1)
            for n, times in sorted(samples.opens.items())
            if times
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--url", required=True, help="the DICOMweb root, e.g. .../dicom-web")
    parser.add_argument("--viewers", type=int, default=4, help=f"OHIF tabs (<= {MAX_VIEWERS})")
    parser.add_argument("--connections", type=int, default=6, help="keep-alive pool per viewer")
    parser.add_argument("--in-flight", type=int, default=4, help="frame requests at once")
    parser.add_argument("--opens", type=int, default=10, help="study opens per viewer at most")
    parser.add_argument("--seconds", type=float, default=60.0, help="no open starts after this")
    parser.add_argument("--think", type=float, default=0.5, help="seconds between opens")
    parser.add_argument("--stagger", type=float, default=0.5, help="random start delay, s")
    parser.add_argument("--max-frames", type=int, default=500, help="frames per series at most")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--study", action="append", help="a StudyInstanceUID (repeatable)")
    parser.add_argument("--studies", type=int, default=50, help="studies listed, without --study")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--label", default="", help="names the run in the output")
    parser.add_argument("--bearer", help="bearer token, or @file")
    parser.add_argument("--out", type=Path, help="also append the JSON line to this file")
    args = parser.parse_args()
    if not 1 <= args.viewers <= MAX_VIEWERS:
        parser.error(f"--viewers is 1 to {MAX_VIEWERS}")
    if args.connections < 1 or args.in_flight < 1 or args.opens < 1 or args.seconds <= 0:
        parser.error("--connections, --in-flight, --opens and --seconds must be positive")
    args.processes = max(1, min(args.processes, args.viewers))
    if args.bearer and args.bearer.startswith("@"):
        args.bearer = Path(args.bearer[1:]).read_text().strip()
    result = run(args)
    line = json.dumps(result)
    print(line)
    if args.out:
        with args.out.open("a") as out:
            out.write(line + "\n")
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
