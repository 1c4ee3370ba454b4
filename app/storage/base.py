"""The object-store port: where instance blobs live (DESIGN.md §4).

Adapters: ``filesystem.FilesystemStore`` (embedded default), ``s3.S3Store`` (obstore; any
S3-compatible store), ``memory.MemoryStore`` (tests). Keys come from :func:`object_key`, which
hashes UIDs, so no client string ever becomes part of a path. The adapters share
:class:`ObjectStoreBase`: the argument checks and error translation of the contract live there
once, each adapter supplies only its I/O.

The base also reports to an observer, when one is set (:meth:`ObjectStoreBase.observe`; the
composition root sets the metrics' one): the duration of each whole-object operation (put,
get_range, stat, delete) and every failure, streamed reads included (their duration is their
request's: a stream lasts as long as its client reads).
"""

import asyncio
import contextlib
import hashlib
import re
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import ClassVar, Protocol

_KEY = re.compile(r"^[a-z0-9][a-z0-9/._-]{0,511}$")


class StorageError(Exception):
    """An object-store operation failed (unreachable, refused, out of space)."""


class ObjectNotFound(StorageError):
    """The key does not exist."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object."""

    key: str
    size: int
    modified: datetime  # timezone-aware UTC


def _h(uid: str) -> str:
    return hashlib.sha256(uid.encode("ascii")).hexdigest()[:24]


def object_key(study_uid: str, series_uid: str, sop_uid: str, sha256_hex: str) -> str:
    """The blob key of an instance: UID hashes plus a content-hash prefix.

    The content hash makes a replacement (STOW-09 ``overwrite``) a new key, so the old blob is
    removed only after the index switched (DESIGN.md §4).

    >>> object_key("1.2", "1.2.3", "1.2.3.4", "ab" * 32)[:31]
    'dicom/77ac319bfe1979e2d799d9e6/'
    """
    return f"dicom/{_h(study_uid)}/{_h(series_uid)}/{_h(sop_uid)}.{sha256_hex[:16]}.dcm"


def check_key(key: str) -> str:
    """Refuse keys that are not of the shape we generate (defence in depth against path tricks)."""
    if (
        not _KEY.match(key)
        or ".." in key
        or "//" in key
        or key.endswith("/")
        or "/./" in key
        or key.endswith("/.")
    ):
        raise ValueError(f"invalid object key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """Validate a ``list()`` prefix: empty, or a key-shaped string that may end with ``/``."""
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def check_range(start: int, end: int | None, chunk_size: int) -> None:
    """Refuse a negative start, an end before start, or a non-positive chunk size."""
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"invalid byte range [{start}, {end})")
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")


def range_stop(end: int | None, size: int) -> int:
    """Where a read of ``[start, end)`` stops in an object of ``size`` bytes: ranges are clamped
    to the object's end like a slice (``end=None``: to the end).

    >>> range_stop(None, 10), range_stop(4, 10), range_stop(50, 10)
    (10, 4, 10)
    """
    return size if end is None else min(end, size)


class StoreObserver(Protocol):
    """What an object store reports about its operations (metrics)."""

    def timed(self, operation: str, seconds: float) -> None:
        """An operation (``put``, ``get_range``, ``stat``, ``delete``) succeeded in ``seconds``."""
        ...

    def failed(self, operation: str, reason: str) -> None:
        """An operation (those, or ``read``: a stream) failed; ``reason`` is ``not_found`` (a read
        of a missing object) or ``failure``."""
        ...


class ObjectStore(Protocol):
    """Blob storage. Every method is safe to call concurrently from one event loop."""

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; durable when this returns (replaces an existing object)."""
        ...

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Store the file at ``path`` under ``key``; durable when this returns.

        With ``move=True`` the adapter may consume the file (rename it into place); the caller
        must not use ``path`` afterwards. Otherwise ``path`` is left as it was.
        """
        ...

    async def put_files(
        self, items: Sequence[tuple[str, Path]], *, concurrency: int = 8
    ) -> list[StorageError | None]:
        """Store each file under its key, consuming the files (as ``put_file(move=True)``);
        returns each item's failure, or None where it is stored. Every stored one is durable
        when this returns, but not necessarily before: an adapter may make the whole batch
        durable at once (a bulk load's way). At most ``concurrency`` writes run at a time.
        """
        ...

    def open(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the object in chunks of at most ``chunk_size`` (ObjectNotFound if absent)."""
        ...

    def open_range(
        self, key: str, start: int, end: int | None = None, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of the object (``end=None``: to its end)."""
        ...

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` in one piece (frames, headers)."""
        ...

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time, or None if the key does not exist."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (fsck and gc)."""
        ...

    async def check(self) -> None:
        """Raise StorageError unless the store is reachable and writable (readiness probe)."""
        ...

    async def close(self) -> None:
        """Release clients and connections."""
        ...


class ObjectStoreBase(ABC):
    """What every adapter shares: the contract's argument checks and error translation.

    The public methods of :class:`ObjectStore` refuse bad keys and ranges (``ValueError``, at
    call time for the streams) and translate failures: a missing object is
    :class:`ObjectNotFound`, any other failure :class:`StorageError`. An adapter implements the
    I/O as the ``_``-prefixed methods of the same names, which receive checked arguments and
    may raise ``FileNotFoundError``, ``OSError`` or one of its :attr:`_failures`. Streams are
    the adapter's own generators (no wrapper on the read path), so ``_stream`` translates its
    errors itself, with :meth:`_errors`.
    """

    #: what the adapter's client raises when the store fails (besides ``FileNotFoundError``,
    #: which means "no such object")
    _failures: ClassVar[tuple[type[Exception], ...]] = (OSError,)
    #: the adapter's kind (metrics labels, usage figures by storage tier)
    kind: ClassVar[str] = "unknown"
    #: told about every operation when set (:meth:`observe`)
    _observer: StoreObserver | None = None

    def observe(self, observer: StoreObserver | None) -> None:
        """Report operations to ``observer`` from now on (None: to no one)."""
        self._observer = observer

    @contextlib.contextmanager
    def _errors(self, what: str, operation: str = "read") -> Iterator[None]:
        """Translate failures of the block: ``FileNotFoundError`` -> :class:`ObjectNotFound`,
        the adapter's :attr:`_failures` -> :class:`StorageError`, both naming ``what``; report a
        failure, and a read of a missing object, to the observer as one of ``operation`` (once,
        however many blocks it passes through)."""
        try:
            yield
        except StorageError as exc:  # raised by the adapter itself, or by an inner block
            self._report(operation, exc)
            raise
        except FileNotFoundError as exc:
            missing = ObjectNotFound(what)
            self._report(operation, missing)
            raise missing from exc
        except self._failures as exc:
            failure = StorageError(f"{what}: {exc}")
            self._report(operation, failure)
            raise failure from exc

    def _report(self, operation: str, error: StorageError) -> None:
        if self._observer is None or getattr(error, "reported", False):
            return
        error.reported = True  # type: ignore[attr-defined]
        if not isinstance(error, ObjectNotFound):
            self._observer.failed(operation, "failure")
        elif operation in ("read", "get_range"):  # elsewhere (stat, delete) it is no failure
            self._observer.failed(operation, "not_found")

    def _timed(self, operation: str, started: float) -> None:
        if self._observer is not None:
            self._observer.timed(operation, time.perf_counter() - started)

    # --- the contract ----------------------------------------------------------------------------

    async def put_bytes(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key``; durable when this returns (replaces an existing object)."""
        check_key(key)
        started = time.perf_counter()
        with self._errors(key, "put"):
            await self._put_bytes(key, data)
        self._timed("put", started)

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> None:
        """Store the file at ``path`` under ``key`` (with ``move=True``, consuming it)."""
        check_key(key)
        started = time.perf_counter()
        try:
            await self._put_file(key, Path(path), move)
        except self._failures as exc:
            # Even a FileNotFoundError: a missing *source* is the caller's bug, and a missing
            # key cannot make a write fail, so this is never ObjectNotFound.
            failure = StorageError(f"{key}: {exc}")
            self._report("put", failure)
            raise failure from exc
        self._timed("put", started)

    async def put_files(
        self, items: Sequence[tuple[str, Path]], *, concurrency: int = 8
    ) -> list[StorageError | None]:
        """Store each file under its key, consuming it; each item's failure or None."""
        for key, _ in items:
            check_key(key)
        started = time.perf_counter()
        results = await self._put_files([(key, Path(path)) for key, path in items], concurrency)
        failures: list[StorageError | None] = []
        for (key, _), result in zip(items, results, strict=True):
            if result is None:
                self._timed("put", started)
                failures.append(None)
                continue
            failure = (
                result if isinstance(result, StorageError) else StorageError(f"{key}: {result}")
            )
            self._report("put", failure)
            failures.append(failure)
        return failures

    async def _put_files(
        self, items: Sequence[tuple[str, Path]], concurrency: int, /
    ) -> list[Exception | None]:
        """Each ``_put_file(move=True)``, at most ``concurrency`` at a time; an adapter that
        can make a batch durable at once overrides it."""
        slots = asyncio.Semaphore(max(1, concurrency))
        failures: tuple[type[Exception], ...] = (StorageError, *self._failures)

        async def put(key: str, source: Path) -> Exception | None:
            async with slots:
                try:
                    await self._put_file(key, source, True)
                    return None
                except failures as exc:
                    return exc

        return list(await asyncio.gather(*(put(key, source) for key, source in items)))

    def open(self, key: str, *, chunk_size: int = 1 << 20) -> AsyncIterator[bytes]:
        """Stream the whole object in chunks of at most ``chunk_size``."""
        return self.open_range(key, 0, None, chunk_size=chunk_size)

    def open_range(
        self, key: str, start: int, end: int | None = None, *, chunk_size: int = 1 << 20
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)``, clamped to the object's end (checked before the
        first chunk is asked for)."""
        check_key(key)
        check_range(start, end, chunk_size)
        return self._stream(key, start, end, chunk_size)

    async def get_range(self, key: str, start: int, length: int) -> bytes:
        """Bytes ``[start, start + length)`` in one piece, clamped to the object's end."""
        check_key(key)
        check_range(start, start + length, 1)
        started = time.perf_counter()
        with self._errors(key, "get_range"):
            data = await self._get_range(key, start, length)
        self._timed("get_range", started)
        return data

    async def stat(self, key: str) -> ObjectInfo | None:
        """Size and modification time, or None if the key does not exist."""
        check_key(key)
        started = time.perf_counter()
        info = None
        with contextlib.suppress(ObjectNotFound), self._errors(key, "stat"):
            info = await self._stat(key)
        self._timed("stat", started)
        return info

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        check_key(key)
        started = time.perf_counter()
        with contextlib.suppress(ObjectNotFound), self._errors(key, "delete"):
            await self._delete(key)
        self._timed("delete", started)

    # --- what an adapter implements ------------------------------------------------------------

    @abstractmethod
    async def _put_bytes(self, key: str, data: bytes, /) -> None: ...

    @abstractmethod
    async def _put_file(self, key: str, source: Path, move: bool, /) -> None: ...

    @abstractmethod
    def _stream(
        self, key: str, start: int, end: int | None, chunk_size: int, /
    ) -> AsyncIterator[bytes]:
        """The chunks of ``[start, end)``; raises ObjectNotFound / StorageError itself."""

    @abstractmethod
    async def _get_range(self, key: str, start: int, length: int, /) -> bytes: ...

    @abstractmethod
    async def _stat(self, key: str, /) -> ObjectInfo | None:
        """The object's info; None or ``FileNotFoundError`` if it does not exist."""

    @abstractmethod
    async def _delete(self, key: str, /) -> None: ...
