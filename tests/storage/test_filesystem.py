"""Filesystem store specifics: reads from the page cache on the event loop (RWF_NOWAIT)."""

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from app.storage.base import ObjectNotFound
from app.storage.filesystem import FilesystemStore


async def test_cached_reads_skip_the_thread_and_fall_back_when_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read the page cache holds is done inline (RWF_NOWAIT); when the kernel says it would
    wait (EAGAIN) or partly (a short read), the thread path reads it; a filesystem that refuses
    the flag (EOPNOTSUPP) is not asked again. The bytes are the same every way."""
    from app.storage import filesystem

    store = FilesystemStore(tmp_path)
    data = bytes(range(256)) * 5000  # 1.28 MB, written: in the page cache
    await store.put_bytes("k/blob", data)
    hops: list[object] = []
    real_run = filesystem._run

    async def counting_run(func: Any, *args: Any) -> Any:
        hops.append(func)
        return await real_run(func, *args)

    monkeypatch.setattr(filesystem, "_run", counting_run)

    async def read_all(key: str, chunk: int) -> bytes:
        return b"".join([c async for c in store.open(key, chunk_size=chunk)])

    assert await store.get_range("k/blob", 1000, 300_000) == data[1000:301_000]
    assert await read_all("k/blob", 2 << 20) == data
    assert await store.get_range("k/blob", len(data) - 10, 100) == data[-10:]  # clamped
    assert hops == []
    assert await read_all("k/blob", 1 << 20) == data  # two chunks: the thread path
    assert len(hops) == 3  # open + first chunk, second chunk, end of file

    if not filesystem._NOWAIT:
        return
    real_preadv = os.preadv

    def kernel(outcome: str) -> Any:
        def preadv(fd: int, buffers: list[bytearray], offset: int, flags: int = 0) -> int:
            if flags and outcome == "eagain":
                raise BlockingIOError(errno.EAGAIN, "would block")
            if flags:
                return real_preadv(fd, [memoryview(buffers[0])[:10]], offset, flags)
            return real_preadv(fd, buffers, offset, flags)

        return preadv

    for outcome in ("eagain", "short"):
        hops.clear()
        monkeypatch.setattr(os, "preadv", kernel(outcome))
        assert await store.get_range("k/blob", 5, 1000) == data[5:1005]
        assert await read_all("k/blob", 2 << 20) == data
        assert len(hops) == 2
        assert store._nowait
    hops.clear()

    def refuse(*_args: object) -> int:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(os, "preadv", refuse)
    assert await store.get_range("k/blob", 0, 10) == data[:10]
    assert not store._nowait
    monkeypatch.setattr(os, "preadv", real_preadv)
    assert await store.get_range("k/blob", 0, 10) == data[:10]
    assert len(hops) == 2
    with pytest.raises(ObjectNotFound):
        await FilesystemStore(tmp_path).get_range("k/none", 0, 10)
