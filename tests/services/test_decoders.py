"""Decoder processes (issue 19): a codec that aborts stops a worker, never the caller.

Real worker processes (spawned: a second or so each): results and exceptions come back as they
are, a worker that dies mid-call (an abort, a native codec failing an allocation under the
worker's address-space limit, a call past its time) gives :class:`DecoderFailed` and is
replaced, and the pool keeps answering.
"""

import os
import time
from collections.abc import Iterator

import pytest

from app.dicom.decoding import DecodeLimits
from app.dicom.transcode import TranscodeError, transcode
from app.errors import DecoderFailed
from app.services.decoders import DecoderPool, shared_pool
from tests import bombs

#: no bound: what the codecs do with a bomb when nothing checks it first
UNCHECKED = DecodeLimits(frame_bytes=1 << 62, instance_bytes=1 << 62, render_pixels=1 << 62)


def echo(data: bytes, extra: object) -> tuple[int, object]:
    return len(data), extra


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def fail(message: str) -> None:
    raise TranscodeError(message)


def abort() -> None:
    os.abort()


def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return "awake"


@pytest.fixture
def pool() -> Iterator[DecoderPool]:
    decoders = DecoderPool(1, memory_limit=1 << 30, timeout=20)
    yield decoders
    decoders.close()


async def test_results_and_exceptions_come_back(pool: DecoderPool) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, sent without a pickled copy
    assert await pool.run(echo, data, {"k": 1}) == (len(data), {"k": 1})
    assert b"".join(await pool.run(chunks, data, 1000)) == data
    with pytest.raises(TranscodeError, match="no such codec") as caught:
        await pool.run(fail, "no such codec")
    assert caught.value.http_status == 406
    assert await pool.run(echo, b"", None) == (0, None)  # the same worker, still fine


async def test_a_crashed_worker_fails_its_call_only(pool: DecoderPool) -> None:
    with pytest.raises(DecoderFailed, match="the decoder stopped") as caught:
        await pool.run(abort)
    assert caught.value.http_status == 422
    assert await pool.run(echo, b"ab", 1) == (2, 1)  # a new worker took its place


async def test_a_native_codec_abort_is_contained(pool: DecoderPool) -> None:
    """An RLE bomb with the size checks off: pylibjpeg-rle (Rust) cannot allocate the
    1.15 GB its header claims within the worker's 1 GiB and aborts the worker process."""
    raw = bombs.rle_bomb(24000, 24000)  # 1.15 GB decoded, 18 MB stored
    with pytest.raises(DecoderFailed):
        await pool.run(transcode, raw, "1.2.840.10008.1.2.1", UNCHECKED)
    assert await pool.run(echo, b"", "alive") == (0, "alive")


async def test_a_call_past_its_time_is_stopped() -> None:
    decoders = DecoderPool(1, timeout=4)  # a new worker starts and imports well within it
    try:
        with pytest.raises(DecoderFailed, match="took too long"):
            await decoders.run(sleep, 30)
        assert await decoders.run(sleep, 0) == "awake"
    finally:
        decoders.close()


async def test_no_processes_means_threads() -> None:
    assert await DecoderPool(0).run(echo, b"abc", None) == (3, None)


def test_services_of_a_process_share_one_pool() -> None:
    assert shared_pool(2, 1 << 30) is shared_pool(2, 1 << 30)
    assert shared_pool(2, 1 << 30) is not shared_pool(1, 1 << 30)
