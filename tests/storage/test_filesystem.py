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


def _spooled(fs: FilesystemStore, count: int) -> list[tuple[str, Path]]:
    """``count`` files in the store's temp directory (where ingest spools), with their keys."""
    items = []
    for i in range(count):
        source = fs.local_tmp_dir() / f"spool-{i}"
        source.write_bytes(bytes([i]) * 1000)
        items.append((f"dicom/s{i % 3}/i{i}.dcm", source))
    return items


def _counted_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors ``os.fsync`` is called on from now on (still synced)."""
    fsynced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        fsynced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return fsynced


async def test_put_files_syncs_the_batch_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch is renamed into place (new directories made on the way) and made durable by one
    syncfs of the store's filesystem: no fsync of each file or directory."""
    from app.storage import filesystem

    if filesystem._syncfs is None:
        pytest.skip("syncfs is Linux's")  # pragma: no cover (CI runs Linux)
    fs = FilesystemStore(tmp_path / "blobs")
    real_syncfs = filesystem._syncfs
    synced: list[int] = []

    def syncfs(fd: int) -> int:
        synced.append(fd)
        return real_syncfs(fd)

    monkeypatch.setattr(filesystem, "_syncfs", syncfs)
    fsynced = _counted_fsyncs(monkeypatch)
    items = _spooled(fs, 9)
    assert await fs.put_files(items) == [None] * 9
    assert len(synced) == 1
    assert fsynced == []
    for i, (key, source) in enumerate(items):
        assert not source.exists()  # consumed: renamed into place
        assert await fs.get_range(key, 0, 2000) == bytes([i]) * 1000
    assert list(fs.local_tmp_dir().iterdir()) == []


async def test_put_files_failed_sync_fails_every_renamed_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When syncfs fails (a writeback error), none of the batch is known to be durable: each
    item is a failure, however its rename went."""
    import ctypes

    from app.storage import filesystem

    fs = FilesystemStore(tmp_path / "blobs")

    def syncfs(_fd: int) -> int:
        ctypes.set_errno(errno.EIO)
        return -1

    monkeypatch.setattr(filesystem, "_syncfs", syncfs)
    items = _spooled(fs, 4)
    items[1] = (items[1][0], tmp_path / "missing")
    failures = await fs.put_files(items)
    assert all(failure is not None for failure in failures)
    assert "Input/output error" in str(failures[0])
    assert "No such file" in str(failures[1])


async def test_put_files_without_syncfs_syncs_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where there is no syncfs (not Linux), a batch goes the per-file way: each file synced
    before its rename."""
    from app.storage import filesystem

    fs = FilesystemStore(tmp_path / "blobs")
    monkeypatch.setattr(filesystem, "_syncfs", None)
    fsynced = _counted_fsyncs(monkeypatch)
    items = _spooled(fs, 3)
    assert await fs.put_files(items) == [None] * 3
    assert len(fsynced) >= 3
    for key, _ in items:
        assert await fs.stat(key) is not None
