"""In-memory object store: a dict of immutable blobs, for tests and demos (DESIGN.md §4).

Nothing is durable; every method otherwise behaves like the real adapters (same key checks,
same range semantics, ``ObjectNotFound`` for missing keys), so the contract tests hold for it.
"""

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import anyio
import anyio.lowlevel

from app.storage.base import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreBase,
    check_prefix,
    range_stop,
)


class MemoryStore(ObjectStoreBase):
    """Dict-backed :class:`~app.storage.base.ObjectStore`."""

    kind: ClassVar[str] = "memory"

    def __init__(self) -> None:
        self._objects: dict[str, tuple[bytes, datetime]] = {}

    async def _put_bytes(self, key: str, data: bytes) -> None:
        """Store a copy of ``data`` under ``key``."""
        self._objects[key] = (bytes(data), datetime.now(UTC))
        await anyio.lowlevel.checkpoint()

    async def _put_file(self, key: str, source: Path, move: bool) -> None:
        """Read the file into memory; with ``move=True`` remove it afterwards."""
        path = anyio.Path(source)
        self._objects[key] = (await path.read_bytes(), datetime.now(UTC))
        if move:
            await path.unlink()

    def _get(self, key: str) -> bytes:
        try:
            return self._objects[key][0]
        except KeyError:
            raise ObjectNotFound(key) from None

    async def _stream(
        self, key: str, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        with self._errors(key):  # reported to the observer as the other adapters' are
            data = self._get(key)
        stop = range_stop(end, len(data))
        for offset in range(start, stop, chunk_size):
            await anyio.lowlevel.checkpoint()
            yield data[offset : min(offset + chunk_size, stop)]

    async def _get_range(self, key: str, start: int, length: int) -> bytes:
        await anyio.lowlevel.checkpoint()
        return self._get(key)[start : start + length]

    async def _stat(self, key: str) -> ObjectInfo | None:
        """Size and time of the last put, or None."""
        await anyio.lowlevel.checkpoint()
        entry = self._objects.get(key)
        if entry is None:
            return None
        return ObjectInfo(key=key, size=len(entry[0]), modified=entry[1])

    async def _delete(self, key: str) -> None:
        """Forget the object (no error if absent)."""
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
