"""What an object store reports to its observer (the metrics): each operation's duration, each
failure, a read of a missing object; nothing once the observer is removed."""

from pathlib import Path

import pytest

from app.services.metrics import StoreMetrics
from app.storage.base import ObjectNotFound, ObjectStoreBase, StorageError
from app.storage.filesystem import FilesystemStore
from app.storage.memory import MemoryStore

KEY = "dicom/aa/bb/cc.0000000000000000.dcm"


class Recorder:
    """An observer that keeps what it is told."""

    def __init__(self) -> None:
        self.timed: list[str] = []
        self.failed: list[tuple[str, str]] = []

    def timed_(self, operation: str, seconds: float) -> None:
        assert seconds >= 0
        self.timed.append(operation)

    def failed_(self, operation: str, reason: str) -> None:
        self.failed.append((operation, reason))


class _Observer:
    def __init__(self, recorder: Recorder) -> None:
        self.timed = recorder.timed_
        self.failed = recorder.failed_


@pytest.fixture(params=["memory", "filesystem"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStoreBase:
    return MemoryStore() if request.param == "memory" else FilesystemStore(tmp_path / "blobs")


async def test_operations_are_timed_and_failures_counted(store: ObjectStoreBase) -> None:
    recorder = Recorder()
    store.observe(_Observer(recorder))
    await store.put_bytes(KEY, b"0123456789")
    assert await store.get_range(KEY, 2, 3) == b"234"
    assert (await store.stat(KEY)) is not None
    assert b"".join([c async for c in store.open(KEY)]) == b"0123456789"  # streams: not timed
    await store.delete(KEY)
    assert await store.stat(KEY) is None  # a missing object is no failure of stat
    await store.delete(KEY)  # nor of delete
    with pytest.raises(ObjectNotFound):
        await store.get_range(KEY, 0, 1)
    with pytest.raises(ObjectNotFound):
        [c async for c in store.open(KEY)]
    assert recorder.timed == ["put", "get_range", "stat", "delete", "stat", "delete"]
    assert recorder.failed == [("get_range", "not_found"), ("read", "not_found")]
    store.observe(None)
    await store.put_bytes(KEY, b"x")
    assert len(recorder.timed) == 6


async def test_a_failed_write_is_counted(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "blobs")
    recorder = Recorder()
    store.observe(_Observer(recorder))
    with pytest.raises(StorageError):
        await store.put_file(KEY, tmp_path / "no-such-spool-file")
    assert recorder.failed == [("put", "failure")]
    assert recorder.timed == []


def test_store_metrics_label_by_kind() -> None:
    from prometheus_client import REGISTRY

    metrics = StoreMetrics("memory")
    labels = {"store": "memory", "operation": "stat"}
    before = REGISTRY.get_sample_value("lightbox_blob_operation_duration_seconds_count", labels)
    metrics.timed("stat", 0.001)
    metrics.timed("stat", 0.002)
    after = REGISTRY.get_sample_value("lightbox_blob_operation_duration_seconds_count", labels)
    assert (after or 0) - (before or 0) == 2
    errors = {"store": "memory", "operation": "read", "reason": "failure"}
    before = REGISTRY.get_sample_value("lightbox_blob_errors_total", errors) or 0
    metrics.failed("read", "failure")
    assert REGISTRY.get_sample_value("lightbox_blob_errors_total", errors) == before + 1
