"""The ObjectStore contract, run against every adapter: memory, filesystem and S3 (moto).

Plus what only the filesystem adapter promises (temp files, crash leftovers, rename vs copy)
and the storage-URL factory.
"""

import contextlib
import errno
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import UTC
from pathlib import Path

import pytest

from app.storage.base import ObjectNotFound, ObjectStore, StorageError, object_key
from app.storage.factory import open_store
from app.storage.filesystem import FilesystemStore
from app.storage.memory import MemoryStore
from app.storage.s3 import S3Store
from tests.s3server import S3Server

KEY = "dicom/aa/bb/cc.0123456789abcdef.dcm"
DATA = bytes(range(256)) * 4 + b"tail"  # 1028 bytes, no two neighbours alike
MIB = 1 << 20


def _s3_store(server: S3Server, bucket: str, prefix: str = "lightbox") -> S3Store:
    return S3Store(
        bucket,
        prefix=prefix,
        endpoint=server.endpoint,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        allow_http=True,
    )


@pytest.fixture(params=["memory", "filesystem", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ObjectStore]:
    """One adapter per parameter, empty, closed after the test."""
    adapter: ObjectStore
    if request.param == "memory":
        adapter = MemoryStore()
    elif request.param == "filesystem":
        adapter = FilesystemStore(tmp_path / "blobs")
    else:
        server: S3Server = request.getfixturevalue("s3_server")
        adapter = _s3_store(server, server.create_bucket())
    yield adapter
    await adapter.close()


async def _read(stream: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in stream])


async def _chunks(stream: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in stream]


# --- the contract ------------------------------------------------------------------------------


async def test_put_bytes_then_open_and_stat(store: ObjectStore) -> None:
    await store.put_bytes(KEY, DATA)
    assert await _read(store.open(KEY)) == DATA
    info = await store.stat(KEY)
    assert info is not None
    assert (info.key, info.size) == (KEY, len(DATA))
    assert info.modified.tzinfo is not None
    assert info.modified.utcoffset() == UTC.utcoffset(None)


async def test_put_replaces_existing_object(store: ObjectStore) -> None:
    await store.put_bytes(KEY, DATA)
    await store.put_bytes(KEY, b"shorter")
    assert await _read(store.open(KEY)) == b"shorter"
    info = await store.stat(KEY)
    assert info is not None
    assert info.size == 7


async def test_empty_object(store: ObjectStore) -> None:
    await store.put_bytes(KEY, b"")
    assert await _chunks(store.open(KEY)) == []
    assert await _read(store.open_range(KEY, 0)) == b""
    assert await store.get_range(KEY, 0, 10) == b""
    info = await store.stat(KEY)
    assert info is not None
    assert info.size == 0


async def test_object_key_shape_is_accepted(store: ObjectStore) -> None:
    key = object_key("1.2.840.1", "1.2.840.1.2", "1.2.840.1.2.3", "ab" * 32)
    await store.put_bytes(key, b"x")
    assert await store.get_range(key, 0, 1) == b"x"


@pytest.mark.parametrize("move", [False, True])
async def test_put_file(store: ObjectStore, tmp_path: Path, move: bool) -> None:
    source = tmp_path / "upload.part"
    source.write_bytes(DATA)
    await store.put_file(KEY, source, move=move)
    assert await _read(store.open(KEY)) == DATA
    if move:
        assert not source.exists()
    else:
        assert source.read_bytes() == DATA


async def test_put_file_missing_source_is_a_storage_error(
    store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(StorageError) as excinfo:
        await store.put_file(KEY, tmp_path / "nope", move=True)
    assert not isinstance(excinfo.value, ObjectNotFound)
    assert await store.stat(KEY) is None


async def test_put_files_stores_each_and_reports_each_failure(
    store: ObjectStore, tmp_path: Path
) -> None:
    """A batch: every file stored under its key, the one whose source is missing failed on its
    own (a StorageError, not ObjectNotFound), the others stored regardless."""
    keys = [f"dicom/aa/k{i}.dcm" for i in range(5)]
    items = []
    for i, key in enumerate(keys):
        source = tmp_path / f"part-{i}"
        if i != 2:
            source.write_bytes(DATA + bytes([i]))
        items.append((key, source))
    failures = await store.put_files(items, concurrency=2)
    assert [failure is None for failure in failures] == [True, True, False, True, True]
    assert isinstance(failures[2], StorageError)
    assert not isinstance(failures[2], ObjectNotFound)
    for i, key in enumerate(keys):
        if i == 2:
            assert await store.stat(key) is None
        else:
            assert await _read(store.open(key)) == DATA + bytes([i])
    assert await store.put_files([]) == []


async def test_put_files_refuses_bad_keys(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "part"
    source.write_bytes(DATA)
    with pytest.raises(ValueError, match="invalid object key"):
        await store.put_files([(KEY, source), ("../escape", source)])
    assert await store.stat(KEY) is None  # checked before anything is written


async def test_open_chunks_are_bounded(store: ObjectStore) -> None:
    await store.put_bytes(KEY, DATA)
    chunks = await _chunks(store.open(KEY, chunk_size=100))
    assert b"".join(chunks) == DATA
    assert [len(c) for c in chunks] == [100] * 10 + [28]


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, None),
        (0, len(DATA)),
        (1, None),
        (5, 17),
        (99, 101),  # straddles a chunk boundary
        (100, 200),  # exactly one chunk
        (100, 300),  # exactly two chunks
        (1000, None),
        (0, 5000),  # end beyond the object: clamped
        (1027, None),  # last byte
        (len(DATA), None),  # at the end: empty
        (5000, None),  # after the end: empty
        (5000, 6000),
        (7, 7),  # empty range
    ],
)
async def test_open_range(store: ObjectStore, start: int, end: int | None) -> None:
    await store.put_bytes(KEY, DATA)
    chunks = await _chunks(store.open_range(KEY, start, end, chunk_size=100))
    assert b"".join(chunks) == DATA[start:end]
    assert all(0 < len(c) <= 100 for c in chunks)


@pytest.mark.parametrize(
    ("start", "length"),
    [(0, 1), (0, len(DATA)), (3, 10), (1020, 8), (1020, 100), (len(DATA), 4), (9000, 4), (5, 0)],
)
async def test_get_range(store: ObjectStore, start: int, length: int) -> None:
    await store.put_bytes(KEY, DATA)
    assert await store.get_range(KEY, start, length) == DATA[start : start + length]


async def test_bad_ranges_are_refused(store: ObjectStore) -> None:
    await store.put_bytes(KEY, DATA)
    with pytest.raises(ValueError, match="range"):
        store.open_range(KEY, -1)
    with pytest.raises(ValueError, match="range"):
        store.open_range(KEY, 10, 5)
    with pytest.raises(ValueError, match="chunk_size"):
        store.open(KEY, chunk_size=0)
    with pytest.raises(ValueError, match="range"):
        await store.get_range(KEY, 0, -1)


async def test_missing_key(store: ObjectStore) -> None:
    with pytest.raises(ObjectNotFound):
        await _read(store.open(KEY))
    with pytest.raises(ObjectNotFound):
        await _read(store.open_range(KEY, 5, 10))
    with pytest.raises(ObjectNotFound):
        await _read(store.open_range(KEY, 5, 5))
    with pytest.raises(ObjectNotFound):
        await store.get_range(KEY, 0, 10)
    with pytest.raises(ObjectNotFound):
        await store.get_range(KEY, 0, 0)
    assert await store.stat(KEY) is None


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put_bytes(KEY, DATA)
    await store.delete(KEY)
    assert await store.stat(KEY) is None
    with pytest.raises(ObjectNotFound):
        await store.get_range(KEY, 0, 1)
    await store.delete(KEY)
    await store.delete("dicom/never/written.dcm")


async def test_list_by_prefix(store: ObjectStore) -> None:
    keys = ["dicom/aa/1.dcm", "dicom/ab/2.dcm", "dicom/ab/x/3.dcm", "dicom/b/4.dcm", "other/5"]
    for i, key in enumerate(keys):
        await store.put_bytes(key, b"x" * i)

    async def listed(prefix: str) -> dict[str, int]:
        return {info.key: info.size async for info in store.list(prefix)}

    assert await listed("") == {key: i for i, key in enumerate(keys)}
    assert set(await listed("dicom/")) == set(keys[:4])
    assert set(await listed("dicom")) == set(keys[:4])
    assert set(await listed("dicom/a")) == set(keys[:3])  # a string prefix, not a directory
    assert set(await listed("dicom/ab/")) == set(keys[1:3])
    assert set(await listed("dicom/ab/2")) == {"dicom/ab/2.dcm"}
    assert set(await listed("dicom/aa/1.dcm")) == {"dicom/aa/1.dcm"}
    assert await listed("nothing") == {}
    assert await listed("dicom/zz/") == {}
    await store.delete("dicom/ab/2.dcm")
    assert set(await listed("dicom/ab")) == {"dicom/ab/x/3.dcm"}


async def test_check(store: ObjectStore) -> None:
    await store.check()
    await store.put_bytes(KEY, DATA)
    await store.check()


BAD_KEYS = [
    "",
    "../etc/passwd",
    "dicom/../../etc/passwd",
    "dicom/..",
    "/etc/passwd",
    "/dicom/x.dcm",
    "dicom\\x.dcm",
    "..\\x",
    "Dicom/x.dcm",
    "dicom/X.dcm",
    "dicom//x.dcm",
    "dicom/",
    "dicom/./x.dcm",
    "dicom/.",
    ".tmp/put-123",
    "./x",
    "dicom/x y",
    "dicom/x\x00",
    "c:/x",
    "x" * 513,
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_bad_keys_are_refused(store: ObjectStore, tmp_path: Path, key: str) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        await store.put_bytes(key, b"x")
    with pytest.raises(ValueError, match="invalid object key"):
        await store.put_file(key, source)
    with pytest.raises(ValueError, match="invalid object key"):
        store.open(key)
    with pytest.raises(ValueError, match="invalid object key"):
        store.open_range(key, 0, 1)
    with pytest.raises(ValueError, match="invalid object key"):
        await store.get_range(key, 0, 1)
    with pytest.raises(ValueError, match="invalid object key"):
        await store.stat(key)
    with pytest.raises(ValueError, match="invalid object key"):
        await store.delete(key)
    assert source.exists()


@pytest.mark.parametrize("prefix", ["/", "../", "/etc", "Dicom/", "dicom//", "a\\b"])
async def test_bad_list_prefixes_are_refused(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid object key"):
        await _read_list(store, prefix)


async def _read_list(store: ObjectStore, prefix: str) -> list[str]:
    return [info.key async for info in store.list(prefix)]


async def test_large_object_streams_in_bounded_chunks(store: ObjectStore, tmp_path: Path) -> None:
    size = 20 * MIB + 12345
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    source = tmp_path / "big.part"
    source.write_bytes(data)
    del data
    await store.put_file(KEY, source, move=True)

    sha, total, sizes = hashlib.sha256(), 0, []
    async for chunk in store.open(KEY, chunk_size=MIB):
        sha.update(chunk)
        total += len(chunk)
        sizes.append(len(chunk))
    assert (total, sha.hexdigest()) == (size, digest)
    assert max(sizes) <= MIB
    assert len(sizes) >= 21

    sizes = [len(c) async for c in store.open_range(KEY, MIB // 2, 5 * MIB, chunk_size=256 * 1024)]
    assert sum(sizes) == 5 * MIB - MIB // 2
    assert max(sizes) <= 256 * 1024


async def test_abandoned_stream_can_be_closed(store: ObjectStore) -> None:
    await store.put_bytes(KEY, DATA)
    stream = store.open(KEY, chunk_size=10)
    async with contextlib.aclosing(stream):  # type: ignore[type-var]
        assert await anext(stream) == DATA[:10]
    # and the object is still there and readable
    assert await store.get_range(KEY, 10, 10) == DATA[10:20]


# --- filesystem only ---------------------------------------------------------------------------


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_filesystem_layout_and_no_temp_files_left(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    fs = FilesystemStore(root)
    source = tmp_path / "in.part"
    source.write_bytes(DATA)
    await fs.put_bytes(KEY, DATA)
    await fs.put_file("dicom/copied", source)
    await fs.put_file("dicom/moved", source, move=True)
    spooled = fs.local_tmp_dir() / "spool.part"
    spooled.write_bytes(b"spooled")
    await fs.put_file("dicom/renamed", spooled, move=True)
    await fs.check()
    assert (root / KEY).read_bytes() == DATA
    assert _files(root) == sorted([KEY, "dicom/copied", "dicom/moved", "dicom/renamed"])
    assert list((root / ".tmp").iterdir()) == []


async def test_filesystem_crash_leftovers_are_not_listed(tmp_path: Path) -> None:
    fs = FilesystemStore(tmp_path / "blobs")
    await fs.put_bytes(KEY, DATA)
    (fs.local_tmp_dir() / "put-crashed").write_bytes(b"half a blob")
    (fs.local_tmp_dir() / "dicom").mkdir()
    (fs.local_tmp_dir() / "dicom" / "x").write_bytes(b"?")
    assert [info.key async for info in fs.list()] == [KEY]
    assert [info.key async for info in fs.list("dicom/")] == [KEY]


def _on_another_device(monkeypatch: pytest.MonkeyPatch, source: Path) -> None:
    """Renaming ``source`` fails as across filesystems (EXDEV); other renames work."""
    real_replace = os.replace

    def replace(src: str | Path, dst: str | Path) -> None:
        if Path(src) == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)


async def test_filesystem_move_across_devices_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = FilesystemStore(tmp_path / "blobs")
    source = tmp_path / "other-device.part"
    source.write_bytes(DATA)
    _on_another_device(monkeypatch, source)
    await fs.put_file(KEY, source, move=True)
    assert not source.exists()
    assert await fs.get_range(KEY, 0, len(DATA)) == DATA
    assert list(fs.local_tmp_dir().iterdir()) == []


async def test_filesystem_put_files_across_devices_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a batch, a source on another filesystem is copied the per-file way; the rest are
    renamed."""
    fs = FilesystemStore(tmp_path / "blobs")
    source = tmp_path / "other-device.part"
    source.write_bytes(DATA)
    spooled = fs.local_tmp_dir() / "spooled"
    spooled.write_bytes(DATA[::-1])
    _on_another_device(monkeypatch, source)
    assert await fs.put_files([(KEY, source), ("dicom/spooled", spooled)]) == [None, None]
    assert not source.exists()
    assert await fs.get_range(KEY, 0, len(DATA)) == DATA
    assert await fs.get_range("dicom/spooled", 0, len(DATA)) == DATA[::-1]
    assert list(fs.local_tmp_dir().iterdir()) == []


async def test_filesystem_failed_write_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = FilesystemStore(tmp_path / "blobs")

    def replace(*_args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(StorageError, match="No space left"):
        await fs.put_bytes(KEY, DATA)
    assert list(fs.local_tmp_dir().iterdir()) == []
    assert await fs.stat(KEY) is None


async def test_filesystem_concurrent_puts(tmp_path: Path) -> None:
    import anyio

    fs = FilesystemStore(tmp_path / "blobs")
    payloads = [bytes([i]) * 10_000 for i in range(20)]
    async with anyio.create_task_group() as tg:
        for i, payload in enumerate(payloads):
            tg.start_soon(fs.put_bytes, f"dicom/k{i % 4}/same", payload)
    for i in range(4):
        assert await fs.get_range(f"dicom/k{i}/same", 0, 10_000) in payloads
    assert list(fs.local_tmp_dir().iterdir()) == []


async def test_filesystem_check_fails_when_unwritable(tmp_path: Path) -> None:
    fs = FilesystemStore(tmp_path / "blobs")
    fs.local_tmp_dir().rmdir()
    (tmp_path / "blobs" / ".tmp").write_bytes(b"not a directory")
    with pytest.raises(StorageError):
        await fs.check()


# --- S3 only -----------------------------------------------------------------------------------


async def test_s3_keys_live_under_the_prefix(s3_server: S3Server, s3_bucket: str) -> None:
    s3 = _s3_store(s3_server, s3_bucket, prefix="/some/prefix/")
    await s3.put_bytes(KEY, DATA)
    listed = s3_server.client.list_objects_v2(Bucket=s3_bucket)
    assert [o["Key"] for o in listed["Contents"]] == [f"some/prefix/{KEY}"]
    assert [info.key async for info in s3.list()] == [KEY]


async def test_s3_large_files_go_up_as_multipart(
    s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    s3 = _s3_store(s3_server, s3_bucket)
    source = tmp_path / "big.part"
    source.write_bytes(b"\x5a" * (12 * MIB))
    await s3.put_file(KEY, source)
    head = s3_server.client.head_object(Bucket=s3_bucket, Key=f"lightbox/{KEY}")
    assert head["ETag"].endswith('-3"')  # three 5 MiB parts: a multipart upload
    assert head["ContentLength"] == 12 * MIB


async def test_s3_unreachable_or_missing_bucket_is_a_storage_error(s3_server: S3Server) -> None:
    missing = _s3_store(s3_server, "no-such-bucket-here")
    with pytest.raises(StorageError):
        await missing.check()
    with pytest.raises(StorageError):
        await missing.put_bytes(KEY, DATA)


# --- factory -----------------------------------------------------------------------------------


def test_open_store_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    absolute = open_store(f"file://{tmp_path}/abs")
    assert isinstance(absolute, FilesystemStore)
    assert absolute.root == tmp_path / "abs"
    assert (tmp_path / "abs" / ".tmp").is_dir()
    relative = open_store("file:rel/dir")
    assert isinstance(relative, FilesystemStore)
    assert relative.root == tmp_path / "rel" / "dir"
    bare = open_store("bare")
    assert isinstance(bare, FilesystemStore)
    assert bare.root == tmp_path / "bare"
    localhost = open_store(f"file://localhost{tmp_path}/lh")
    assert isinstance(localhost, FilesystemStore)
    assert localhost.root == tmp_path / "lh"


def test_open_store_other_schemes() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    s3 = open_store("s3://bucket/a/b/", s3_endpoint="http://127.0.0.1:9", s3_allow_http=True)
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.prefix) == ("bucket", "a/b")


@pytest.mark.parametrize(
    "url",
    ["", "ftp://host/x", "s3://", "s3:///prefix", "file://remote/x", "memory://x", "http://x"],
)
def test_open_store_refuses(url: str) -> None:
    with pytest.raises(ValueError, match=r"URL|memory"):
        open_store(url)
