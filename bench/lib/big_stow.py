"""One large STOW-RS request streamed into a running server while its RSS is sampled.

Builds ``--parts`` instances of ``--part-mb`` MB each on the fly (one header per part, pixel data
generated in chunks; nothing is held whole in memory on the client either), streams them as one
``multipart/related`` request, samples the RSS of the server process and its children every
50 ms, and prints the peak. Example (2 GB):

    .venv/bin/python bench/run.py memory stow --url http://127.0.0.1:8000/dicom-web --pid $PID \
        --parts 8 --part-mb 256
"""

import argparse
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import numpy as np
import psutil
from pydicom.uid import generate_uid

from tests.factories import streamed_head

BOUNDARY = f"big-{uuid.uuid4().hex}"
CHUNK = 1 << 20


def header(study: str, series: str, pixel_bytes: int, index: int) -> tuple[bytes, int]:
    """The PS3.10 header of one instance, up to and including the PixelData element header."""
    side = int((pixel_bytes // 2) ** 0.5)
    frames = pixel_bytes // (side * side * 2)
    length = frames * side * side * 2
    head = streamed_head(
        length,
        rows=side,
        columns=side,
        frames=frames,
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        PatientID="BIG-1",
        PatientName="Big^Study",
        SeriesNumber=1,
        InstanceNumber=index + 1,
        BitsStored=16,
        HighBit=15,
    )
    return head, length


def body(parts: int, part_bytes: int) -> Iterator[bytes]:
    study, series = generate_uid(), generate_uid()
    noise = np.random.default_rng(1).integers(0, 4096, CHUNK // 2, dtype=np.uint16).tobytes()
    for index in range(parts):
        head, length = header(study, series, part_bytes, index)
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode() + head
        sent = 0
        while sent < length:
            n = min(CHUNK, length - sent)
            yield noise[:n]
            sent += n
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


def rss(pid: int) -> int:
    proc = psutil.Process(pid)
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="DICOMweb root of the server")
    parser.add_argument("--pid", type=int, required=True, help="server process (children too)")
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--part-mb", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=600)
    args = parser.parse_args()

    peak = [rss(args.pid)]
    baseline = peak[0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss(args.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    total = args.parts * args.part_mb * 1024 * 1024
    started = time.monotonic()
    response = httpx.post(
        f"{args.url}/studies",
        content=body(args.parts, args.part_mb * 1024 * 1024),
        headers={
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            "Accept": "application/dicom+json",
        },
        timeout=args.max_seconds,
    )
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    stored = len(response.json().get("00081199", {}).get("Value", []))
    print(f"status {response.status_code}, {stored}/{args.parts} instances stored")
    print(f"sent {total / 1e9:.2f} GB in {elapsed:.1f} s ({total / 1e6 / elapsed:.0f} MB/s)")
    print(f"server RSS: baseline {baseline / 1e6:.0f} MB, peak {peak[0] / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
