"""Rendered and thumbnail latency of running DICOMweb servers (issue 5, performance section).

    .venv/bin/python bench/run.py retrieve render \\
        --target lightbox=http://127.0.0.1:8000/dicom-web \\
        --target orthanc=http://127.0.0.1:8042/dicom-web \\
        [--frames 50] [--repeats 200] [--series-size 500] [--thumbs 50] [--time-limit 300]

For each target, in the same run and against the same data (stored by STOW-RS first):

* ``rendered-uncached``: ``GET .../instances/{i}/rendered`` (image/jpeg) of ``--frames`` distinct
  512x512 16-bit CT instances, each asked for once (nothing can be cached);
* ``rendered-cached``: the same URL of one instance ``--repeats`` times (after one warm-up);
* ``thumbnail-series``: ``GET .../series/{s}/thumbnail`` of a ``--series-size``-instance series,
  ``--thumbs`` times with a different ``viewport`` each time (so Lightbox's render cache never
  answers; the index look-up of the whole series and the rendering are in every sample).

Prints p50/p95/max in milliseconds and the status codes seen, and writes a JSON file per run to
``--results``. Requests are sequential (latency, not throughput); every loop is bounded by its
count and by ``--time-limit``. Start Orthanc with ``../shared/peer/peer_orthanc.sh start`` and
Lightbox with ``lightbox serve`` beforehand (see bench/README.md). Do not run it beside builds or
tests.
"""

import argparse
import io
import json
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
)

BOUNDARY = "lightbox-bench-render"


def ct_instance(study: str, series: str, number: int, size: int, seed: int) -> bytes:
    """A 16-bit CT slice with rescale and a window, distinct pixels per ``seed``."""
    rng = np.random.default_rng(seed)
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.PatientName, ds.PatientID = "Bench^Render", "BENCH-R"
    ds.StudyDate, ds.Modality = "20240101", "CT"
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    yy, xx = np.mgrid[0:size, 0:size]
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < (size * 0.4) ** 2
    pixels = np.where(disk, 1024 + 40, 0) + rng.integers(0, 200, (size, size))
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def multipart(parts: list[bytes]) -> bytes:
    body = bytearray()
    for part in parts:
        body += f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        body += part + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return bytes(body)


def stow(http: httpx.Client, base: str, instances: Iterator[bytes], batch: int = 20) -> int:
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
        "Accept": "application/dicom+json",
    }
    stored = 0
    pending: list[bytes] = []

    def flush() -> None:
        nonlocal stored
        if pending:
            response = http.post(f"{base}/studies", content=multipart(pending), headers=headers)
            response.raise_for_status()
            stored += len(pending)
            pending.clear()

    for raw in instances:
        pending.append(raw)
        if len(pending) >= batch:
            flush()
    flush()
    return stored


@dataclass
class Sample:
    name: str
    millis: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        ms = sorted(self.millis)
        p95 = ms[min(len(ms) - 1, max(0, round(0.95 * len(ms)) - 1))] if ms else None
        return {
            "n": len(ms),
            "p50_ms": round(statistics.median(ms), 2) if ms else None,
            "p95_ms": None if p95 is None else round(p95, 2),
            "max_ms": round(ms[-1], 2) if ms else None,
            "statuses": dict(self.statuses),
        }


def timed(http: httpx.Client, url: str, sample: Sample, **params: str) -> None:
    start = time.perf_counter()
    response = http.get(url, params=params or None, headers={"Accept": "image/jpeg"})
    _ = response.content
    sample.millis.append((time.perf_counter() - start) * 1000)
    sample.statuses[response.status_code] += 1


def run_target(base: str, args: argparse.Namespace, token: str | None = None) -> dict[str, Any]:
    deadline = time.monotonic() + args.time_limit
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with httpx.Client(timeout=120, headers=headers) as http:
        study, frames_series, big_series = (str(generate_uid()) for _ in range(3))
        singles = [
            ct_instance(study, frames_series, n + 1, args.size, seed=n) for n in range(args.frames)
        ]
        uids = [_sop_uid(raw) for raw in singles]
        stow(http, base, iter(singles))
        stow(
            http,
            base,
            (
                ct_instance(study, big_series, n + 1, args.size, seed=10_000 + n)
                for n in range(args.series_size)
            ),
        )
        instance = f"{base}/studies/{study}/series/{frames_series}/instances"
        uncached, cached, thumbs = (
            Sample("rendered-uncached"),
            Sample("rendered-cached"),
            Sample("thumbnail-series"),
        )
        for sop in uids:
            if time.monotonic() > deadline:
                break
            timed(http, f"{instance}/{sop}/rendered", uncached)
        url = f"{instance}/{uids[0]}/rendered"
        timed(http, url, Sample("warm-up"))
        for _ in range(args.repeats):
            if time.monotonic() > deadline:
                break
            timed(http, url, cached)
        series_url = f"{base}/studies/{study}/series/{big_series}/thumbnail"
        for n in range(args.thumbs):
            if time.monotonic() > deadline:
                break
            edge = 128 - (n % 64)
            timed(http, series_url, thumbs, viewport=f"{edge},{edge}")
    return {s.name: s.summary() for s in (uncached, cached, thumbs)}


def _sop_uid(raw: bytes) -> str:
    return str(dcmread(io.BytesIO(raw), stop_before_pixels=True).SOPInstanceUID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", action="append", required=True, help="name=base URL")
    parser.add_argument("--frames", type=int, default=50, help="distinct instances, uncached")
    parser.add_argument("--repeats", type=int, default=200, help="cached requests")
    parser.add_argument("--series-size", type=int, default=500, help="instances of the series")
    parser.add_argument("--thumbs", type=int, default=50, help="series thumbnail requests")
    parser.add_argument("--size", type=int, default=512, help="rows = columns")
    parser.add_argument("--time-limit", type=float, default=600, help="seconds per target")
    parser.add_argument(
        "--results", type=Path, default=Path(__file__).resolve().parents[1] / "results"
    )
    parser.add_argument(
        "--bearer", action="append", default=[], help="NAME=TOKEN or NAME=@file for a target"
    )
    args = parser.parse_args()
    tokens = {}
    for item in args.bearer:
        who, _, value = item.partition("=")
        tokens[who] = Path(value[1:]).read_text().strip() if value.startswith("@") else value
    report: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "targets": {}}
    for target in args.target:
        name, _, base = target.partition("=")
        report["targets"][name] = run_target(base.rstrip("/"), args, tokens.get(name))
        for metric, values in report["targets"][name].items():
            print(f"{name:12} {metric:20} {values}")
    targets = report["targets"]
    if "lightbox" in targets and "orthanc" in targets:
        for metric in ("rendered-uncached", "rendered-cached", "thumbnail-series"):
            lb, orthanc = targets["lightbox"][metric], targets["orthanc"][metric]
            ours, theirs = lb["p95_ms"], orthanc["p95_ms"]
            all_ok = set(lb["statuses"]) == set(orthanc["statuses"]) == {200}
            if ours and theirs and all_ok:
                print(f"ratio p95 lightbox/orthanc {metric:20} {ours / theirs:.2f}")
    args.results.mkdir(parents=True, exist_ok=True)
    out = args.results / f"render-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
