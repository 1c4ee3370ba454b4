"""In-memory object store: a dict of immutable blobs, for tests and demos (DESIGN.md §4).

Nothing is durable; every method otherwise behaves like the real adapters (same key checks,
same range semantics, ``ObjectNotFound`` for missing keys), so the contract tests hold for it.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.lowlevel

from app.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    check_key,
    check_prefix,
    check_range,
)


class MemoryStore:
    """Dict-backed :class:`~app.storage.base.ObjectStore`."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, datetime]] = {}

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store a copy of ``data`` under ``key``."""
        check_key(key)
        self._objects[key] = (bytes(data), datetime.now(UTC))
        await anyio.lowlevel.checkpoint()

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Read the file into memory; with ``move=True`` remove it afterwards."""
        check_key(key)
        source = anyio.Path(path)
        try:
            data = await source.read_bytes()
            self._objects[key] = (data, datetime.now(UTC))
            if move:
                await source.unlink()
        except OSError as exc:  # the source is unreadable: the caller's problem, not a 404
            raise StorageError(f"{key}: {exc}") from exc

    def _get(self, key: str) -> bytes:
        try:
            return self._objects[key][0]
        except KeyError:
            raise ObjectNotFound(key) from None

    def open(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the whole object in chunks of at most ``chunk_size``."""
        return self.open_range(key, 0, None, chunk_size=chunk_size)

    def open_range(
        self, key: str, start: int, end: int | None = None, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)``, clamped to the object's end."""
        check_key(key)
        check_range(start, end, chunk_size)
        return self._stream(key, start, end, chunk_size)

    async def _stream(
        self, key: str, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        data = self._get(key)
        stop = len(data) if end is None else min(end, len(data))
        for offset in range(start, stop, chunk_size):
            await anyio.lowlevel.checkpoint()
            yield data[offset : min(offset + chunk_size, stop)]

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)``, clamped to the object's end."""
        check_key(key)
        check_range(start, start + length, 1)
        await anyio.lowlevel.checkpoint()
        return self._get(key)[start : start + length]

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and time of the last put, or None."""
        check_key(key)
        await anyio.lowlevel.checkpoint()
        entry = self._objects.get(key)
        if entry is None:
            return None
        return ObjectInfo(key=key, size=len(entry[0]), modified=entry[1])

    async def delete(self, key: str) -> None:
        """Forget the object (no error if absent)."""
        check_key(key)
        self._objects.pop(key, None)
        await anyio.lowlevel.checkpoint()

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order."""
        check_prefix(prefix)
        for key in sorted(k for k in self._objects if k.startswith(prefix)):
            entry = self._objects.get(key)
            if entry is not None:  # deleted while we were suspended
                yield ObjectInfo(key=key, size=len(entry[0]), modified=entry[1])
            await anyio.lowlevel.checkpoint()

    async def check(self) -> None:
        """Always ready."""
        await anyio.lowlevel.checkpoint()

    async def close(self) -> None:
        """Nothing to release."""
        await anyio.lowlevel.checkpoint()
