"""A 2 GB study retrieved from the filesystem and from S3 streams with server RSS <= 300 MB.

Issue 4 ("Memory stays bounded whatever the study size"): a real ``lightbox serve`` process,
8 instances of 256 MiB stored through STOW-RS (generated on the fly, never whole in memory), then
the whole study retrieved as stored while the RSS of the server process tree is sampled every
20 ms. S3 is moto's server on 127.0.0.1 (tests/s3server.py).
"""

import contextlib
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from pydicom.uid import generate_uid

from tests.e2e.server import running_server, server_env
from tests.factories import streamed_head
from tests.s3server import S3Server

PARTS = 8
PART_BYTES = 256 << 20  # 8 x 256 MiB = 2 GiB of pixel data
RSS_LIMIT = 300 << 20
BOUNDARY = "lightbox-memory-test"
CHUNK = 4 << 20


def _header(study: str, series: str, index: int) -> bytes:
    """The PS3.10 file up to and including the Pixel Data element header (OW, 256 MiB)."""
    side = 4096
    return streamed_head(
        PART_BYTES,
        rows=side,
        columns=side,
        frames=PART_BYTES // (side * side * 2),
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        PatientID="BIG-4",
        PatientName="Big^Retrieve",
        SeriesNumber=1,
        InstanceNumber=index + 1,
        BitsStored=16,
        HighBit=15,
    )


def _body(study: str) -> Iterator[bytes]:
    series = generate_uid()
    noise = np.random.default_rng(4).integers(0, 1 << 16, CHUNK // 2, dtype=np.uint16).tobytes()
    for index in range(PARTS):
        yield f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield _header(study, series, index)
        for _ in range(PART_BYTES // CHUNK):
            yield noise
        yield b"\r\n"
    yield f"--{BOUNDARY}--\r\n".encode()


class RssSampler:
    """Peak RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        self._root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> int:
        total = 0
        for proc in [self._root, *self._root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.02)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _retrieve(env: dict[str, str], study: str) -> tuple[int, int, int]:
    """(bytes retrieved, peak RSS while retrieving, RSS before) of a fresh server process."""
    with running_server(env) as server:
        before = RssSampler(server.process.pid)._rss()
        received = 0
        started = time.monotonic()
        with (
            RssSampler(server.process.pid) as sampler,
            httpx.stream(
                "GET",
                f"{server.dicomweb}/studies/{study}",
                headers={
                    "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'
                },
                timeout=300,
            ) as stream,
        ):
            assert stream.status_code == 200
            for chunk in stream.iter_raw(1 << 20):
                received += len(chunk)
        elapsed = time.monotonic() - started
        peak_mib = sampler.peak >> 20
        sys.stderr.write(
            f"retrieved {received >> 20} MiB in {elapsed:.1f} s, peak {peak_mib} MiB\n"
        )
        return received, sampler.peak, before


@pytest.mark.slow
def test_two_gigabyte_study_streams_in_bounded_memory(tmp_path: Path, s3_server: S3Server) -> None:
    """Stored once through STOW-RS (filesystem), retrieved by a fresh server process from the
    filesystem, then from S3 after the blobs were copied to the bucket under the same keys (a
    STOW into moto would take minutes; the retrieve path is what is measured)."""
    data_dir = tmp_path / "data"
    database = f"sqlite+aiosqlite:///{tmp_path / 'index.db'}"
    env = server_env(data_dir, database)
    study = generate_uid()
    t0 = time.monotonic()
    with running_server(env) as server:
        response = httpx.post(
            f"{server.dicomweb}/studies",
            content=_body(study),
            headers={
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
                "Accept": "application/dicom+json",
            },
            timeout=300,
        )
        assert response.status_code == 200, response.text[:500]
    sys.stderr.write(f"stored at {time.monotonic() - t0:.1f} s\n")

    received, peak, before = _retrieve(env, study)
    assert received > PARTS * PART_BYTES  # every instance, with headers and framing
    assert peak <= RSS_LIMIT, f"filesystem: RSS peaked at {peak >> 20} MiB (idle {before >> 20})"

    bucket = s3_server.create_bucket()
    blobs = data_dir / "blobs"
    # straight into moto's in-process backend: a PUT of 2 GB through moto's HTTP front end takes
    # about a minute on a busy 2-core machine; the GETs measured below go through HTTP
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for path in sorted(p for p in blobs.rglob("*.dcm")):
        key = f"lightbox/{path.relative_to(blobs).as_posix()}"
        backend.put_object(bucket, key, path.read_bytes())
    sys.stderr.write(f"copied at {time.monotonic() - t0:.1f} s\n")
    shutil.rmtree(blobs)  # from now on only the bucket holds them
    s3_env = server_env(
        data_dir,
        database,
        LIGHTBOX_STORAGE_URL=f"s3://{bucket}/lightbox",
        LIGHTBOX_S3__ENDPOINT=s3_server.endpoint,
        LIGHTBOX_S3__REGION=s3_server.region,
        LIGHTBOX_S3__ACCESS_KEY_ID=s3_server.access_key_id,
        LIGHTBOX_S3__SECRET_ACCESS_KEY=s3_server.secret_access_key,
        LIGHTBOX_S3__ALLOW_HTTP="true",
    )
    received_s3, peak, before = _retrieve(s3_env, study)
    assert received_s3 == received
    assert peak <= RSS_LIMIT, f"S3: RSS peaked at {peak >> 20} MiB (idle {before >> 20})"
