"""Spooling of one incoming instance: memory up to a bound, then a temp file, hashed on the way.

DESIGN.md §4 step 1 and §5: a request body is never held whole in memory, whatever its size.
"""

import hashlib
import io
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.dicom.parse import PART10_PREAMBLE, PART10_PREFIX_LENGTH, has_part10_prefix
from app.errors import OutOfResources


@dataclass(slots=True)
class SpooledPart:
    """A received instance: its bytes (in memory) or a temp file, with size and SHA-256."""

    size: int
    sha256: str
    data: bytes | None = None
    path: Path | None = None
    #: the bytes open with the PS3.10 preamble and "DICM" (False: the File Meta group first)
    prefixed: bool = False

    def open(self) -> BinaryIO:
        """A binary file object over the content (the caller closes it)."""
        if self.data is not None:
            return io.BytesIO(self.data)
        assert self.path is not None
        return self.path.open("rb")

    def discard(self) -> None:
        """Remove the temp file, if any (idempotent)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None
        self.data = None


class Spool:
    """Accumulates one part's bytes; ``finish()`` returns the :class:`SpooledPart`.

    With ``zero_preamble`` (STOW-18) the 128-byte preamble of a PS3.10 file is zeroed before it
    is hashed and stored, which defuses dual-format (polyglot) files.
    """

    def __init__(
        self, *, memory_limit: int, max_bytes: int, tmp_dir: Path, zero_preamble: bool = False
    ) -> None:
        self._memory_limit = memory_limit
        self._max_bytes = max_bytes
        self._tmp_dir = tmp_dir
        self._zero_preamble = zero_preamble
        self._head: bytearray | None = bytearray()  # held until the preamble decision
        self._buffer = bytearray()
        self._fd: int | None = None
        self._path: Path | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self._prefixed = False

    @property
    def size(self) -> int:
        return self._size

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Append bytes; raises OutOfResources past ``max_bytes``."""
        if not chunk:
            return
        self._size += len(chunk)
        if self._size > self._max_bytes:
            raise OutOfResources(f"instance larger than the limit of {self._max_bytes} bytes")
        if self._head is not None and len(self._head) < PART10_PREFIX_LENGTH:
            self._head += chunk
            if len(self._head) < PART10_PREFIX_LENGTH:
                return
            chunk = self._release_head()
        self._append(chunk)

    def _release_head(self) -> bytes:
        assert self._head is not None
        head = bytes(self._head)
        self._prefixed = has_part10_prefix(head)
        if self._zero_preamble and self._prefixed:
            head = bytes(PART10_PREAMBLE) + head[PART10_PREAMBLE:]
        self._head = None
        return head

    def _append(self, chunk: bytes | bytearray | memoryview) -> None:
        self._hash.update(chunk)
        if self._fd is not None:
            _write_all(self._fd, chunk)
            return
        self._buffer += chunk
        if len(self._buffer) > self._memory_limit:
            path = self._tmp_dir / f"part-{uuid.uuid4().hex}.dcm"
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileNotFoundError:
                self._tmp_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._fd, self._path = fd, path
            _write_all(fd, self._buffer)
            self._buffer = bytearray()

    def finish(self) -> SpooledPart:
        """The complete part."""
        if self._head is not None:
            self._append(self._release_head())
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            return SpooledPart(
                self._size, self._hash.hexdigest(), path=self._path, prefixed=self._prefixed
            )
        return SpooledPart(
            self._size, self._hash.hexdigest(), data=bytes(self._buffer), prefixed=self._prefixed
        )

    def discard(self) -> None:
        """Drop everything received (a part that failed or was cut off)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None
        self._buffer = bytearray()


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
