"""Reading what :func:`~.sources.walk` found: a DICOM file, or the members of a ZIP or tar
archive, each spooled (hashed on the way) as ingest spools a STOW-RS part; anything else is
refused with its reason, never a crash.

Content decides, not names (:func:`sniff`): a PS3.10 file has ``DICM`` after its preamble (or
starts with its File Meta group), an archive its magic number. Archives are read in place and
streamed: a ZIP member is inflated into the spool chunk by chunk, a tar (plain, gzip, bzip2 or
xz) is read as a stream, one member at a time, its member list dropped as it goes. A member whose
declared size exceeds the instance limit is refused without being inflated, and one that inflates
beyond it (a header that lies, a zip bomb) is refused when the spool reaches the limit: memory
stays the spool's bound. Archives inside archives are not opened (refused: extract them first).

Each reader is a generator of :data:`Item`; the service steps it in a worker thread.
"""

import enum
import os
import stat
import tarfile
import threading
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Final, Literal

from app.dicom.instance import ParsedInstance
from app.errors import OutOfResources
from app.index.imports import ImportJournal
from app.services.imports.sources import FileFound
from app.services.spool import Spool, SpooledPart

__all__ = [
    "ArchiveEnd",
    "ArchiveState",
    "Candidate",
    "Item",
    "Kind",
    "Reader",
    "Refused",
    "Skipped",
    "sniff",
]

_CHUNK: Final = 1 << 20
_HEAD: Final = 512


class Kind(enum.Enum):
    """What a file's first bytes say it is."""

    DICOM = "DICOM"
    ZIP = "ZIP archive"
    GZIP = "gzip data"
    BZIP2 = "bzip2 data"
    XZ = "xz data"
    TAR = "tar archive"
    OTHER = "other"

    @property
    def archive(self) -> bool:
        return self not in (Kind.DICOM, Kind.OTHER)


_TarMode = Literal["r|", "r|gz", "r|bz2", "r|xz"]
_TAR_MODES: Final[dict[Kind, _TarMode]] = {
    Kind.TAR: "r|",
    Kind.GZIP: "r|gz",
    Kind.BZIP2: "r|bz2",
    Kind.XZ: "r|xz",
}


def sniff(head: bytes) -> Kind:
    """What ``head`` (a file's first 512 bytes) is.

    >>> sniff(bytes(128) + b"DICM"), sniff(b"PK\\x03\\x04"), sniff(b"\\x1f\\x8b\\x08")
    (<Kind.DICOM: 'DICOM'>, <Kind.ZIP: 'ZIP archive'>, <Kind.GZIP: 'gzip data'>)
    >>> sniff(b"\\x02\\x00\\x00\\x00UL"), sniff(b"hello")
    (<Kind.DICOM: 'DICOM'>, <Kind.OTHER: 'other'>)
    """
    if head[128:132] == b"DICM":
        return Kind.DICOM
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Kind.ZIP
    if head[:2] == b"\x1f\x8b":
        return Kind.GZIP
    if head[:3] == b"BZh":
        return Kind.BZIP2
    if head[:6] == b"\xfd7zXZ\x00":
        return Kind.XZ
    if head[257:262] == b"ustar":
        return Kind.TAR
    if head[:2] == b"\x02\x00" and head[4:6].isalpha():
        return Kind.DICOM  # PS3.10 File Meta without the preamble (STOW clients send that too)
    return Kind.OTHER


@dataclass(slots=True)
class ArchiveState:
    """An archive being imported: done (journaled as a whole) when every member it holds was
    stored or is no DICOM, so a re-run skips it without opening it."""

    key: str
    size: int
    mtime_ns: int
    members: int = 0
    settled: int = 0
    ok: bool = True
    read: bool = False  # every member has been read

    @property
    def complete(self) -> bool:
        return self.read and self.ok and self.settled == self.members


@dataclass(slots=True)
class Candidate:
    """An instance to ingest: where it comes from (``name``, the journal key) and its bytes
    (None in a dry run)."""

    name: str
    size: int
    mtime_ns: int
    part: SpooledPart | None
    archive: ArchiveState | None = None
    #: parsed as it was read (:class:`Reader` given ``parse``), or why it could not be
    parsed: ParsedInstance | Exception | None = None


@dataclass(slots=True)
class Refused:
    """Something not imported, and why; ``final`` when a re-run would refuse it again for the
    same reason (no DICOM), which does not keep its archive from being done."""

    name: str
    reason: str
    final: bool = False
    archive: ArchiveState | None = None


@dataclass(slots=True)
class Skipped:
    """Stored by an earlier run (the journal), not read again."""

    name: str
    size: int


@dataclass(slots=True)
class ArchiveEnd:
    """Every member of an archive has been read."""

    archive: ArchiveState


Item = Candidate | Refused | Skipped | ArchiveEnd


@dataclass(slots=True)
class Counter:
    """Bytes read so far (from several reader threads)."""

    value: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, n: int) -> None:
        with self._lock:
            self.value += n


class Reader:
    """Reads found files into :data:`Item` (module docstring)."""

    def __init__(
        self,
        spool: Callable[[], Spool],
        *,
        max_bytes: int,
        journal: ImportJournal | None,
        dry_run: bool = False,
        parse: Callable[[SpooledPart], ParsedInstance] | None = None,
    ) -> None:
        self._spool = spool
        self._parse = parse
        self._max = max_bytes
        self._journal = journal
        self._dry_run = dry_run
        self.bytes_read = Counter()

    def done(self, name: str, size: int, mtime_ns: int) -> bool:
        return self._journal is not None and self._journal.done(name, size, mtime_ns)

    def _parsed(self, part: SpooledPart) -> ParsedInstance | Exception | None:
        """The instance parsed in the thread that read it, when a parser was given: a local
        import's reader spares the ingest a second trip to a thread per instance, and the
        hand-offs it costs (20,000 64 KB files, two worker processes: 1,031/s and 3,384 CPU
        ticks in all -> 1,180/s and 2,949). What the parser raises is kept for the ingest
        session, which refuses the instance with it as it would have."""
        if self._parse is None:
            return None
        try:
            return self._parse(part)
        except Exception as exc:
            return exc

    def read(self, found: FileFound) -> Iterator[Item]:
        """The items of one file: itself, or its members."""
        if self.done(found.path, found.size, found.mtime_ns):
            self.bytes_read.add(found.size)
            yield Skipped(found.path, found.size)
            return
        try:
            # O_NONBLOCK: should the path have become a FIFO since the walk, opening it must
            # not wait for a writer; fstat below then refuses it
            fd = os.open(found.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            yield Refused(found.path, f"not readable: {exc.strerror or exc}")
            return
        with os.fdopen(fd, "rb") as fp:
            info = os.fstat(fp.fileno())
            if not stat.S_ISREG(info.st_mode):
                yield Refused(found.path, "not a regular file")
                return
            os.set_blocking(fp.fileno(), True)
            try:
                head = fp.read(_HEAD)
            except OSError as exc:
                yield Refused(found.path, f"not readable: {exc.strerror or exc}")
                return
            kind = sniff(head)
            if kind is Kind.DICOM:
                yield self._file(found, fp, head)
            elif kind is Kind.ZIP:
                yield from self._zip(found, fp)
            elif kind.archive:
                yield from self._tar(found, fp, kind)
            else:
                self.bytes_read.add(found.size)
                yield Refused(found.path, _not_dicom(head), final=True)

    def _file(self, found: FileFound, fp: IO[bytes], head: bytes) -> Item:
        if found.size > self._max:
            self.bytes_read.add(found.size)
            return Refused(found.path, f"larger than the instance limit of {self._max} bytes")
        if self._dry_run:
            self.bytes_read.add(found.size)
            return Candidate(found.path, found.size, found.mtime_ns, None)
        spool = self._spool()
        try:
            spool.write(head)
            self.bytes_read.add(len(head))
            while chunk := fp.read(_CHUNK):
                spool.write(chunk)
                self.bytes_read.add(len(chunk))
        except OutOfResources as exc:
            spool.discard()
            return Refused(found.path, exc.message)
        except OSError as exc:
            spool.discard()
            return Refused(found.path, f"read failed: {exc.strerror or exc}")
        part = spool.finish()
        return Candidate(found.path, found.size, found.mtime_ns, part, parsed=self._parsed(part))

    def _member(
        self, name: str, state: ArchiveState, source: IO[bytes], declared: int | None
    ) -> Item:
        """One archive member from its stream ``source``."""
        if declared is not None and declared > self._max:
            return Refused(
                name,
                f"declares {declared} bytes inflated, more than the instance limit of "
                f"{self._max} (a zip bomb?)",
                archive=state,
            )
        head = source.read(_HEAD)
        kind = sniff(head)
        if kind.archive:
            return Refused(name, "an archive inside an archive (extract it first)", archive=state)
        if kind is not Kind.DICOM:
            return Refused(name, _not_dicom(head), final=True, archive=state)
        if self._dry_run:
            return Candidate(name, state.size, state.mtime_ns, None, state)
        spool = self._spool()
        try:
            spool.write(head)
            while chunk := source.read(_CHUNK):
                spool.write(chunk)
        except OutOfResources:
            spool.discard()
            return Refused(
                name,
                f"inflates beyond the instance limit of {self._max} bytes (a zip bomb?)",
                archive=state,
            )
        except BaseException:
            spool.discard()
            raise
        part = spool.finish()
        return Candidate(name, state.size, state.mtime_ns, part, state, self._parsed(part))

    def _zip(self, found: FileFound, fp: IO[bytes]) -> Iterator[Item]:
        fp.seek(0)
        state = ArchiveState(found.path, found.size, found.mtime_ns)
        try:
            # the central directory is read whole: a ZIP's member list is in memory while it
            # is read (zipfile's way; ~100 bytes a member)
            archive = zipfile.ZipFile(fp)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            self.bytes_read.add(found.size)
            yield Refused(found.path, f"not a readable ZIP archive: {exc}")
            return
        counted = 0
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                name = f"{found.path}!{info.filename}"
                self.bytes_read.add(info.compress_size)
                counted += info.compress_size
                if self.done(name, found.size, found.mtime_ns):
                    yield Skipped(name, info.file_size)
                    continue
                state.members += 1
                if info.flag_bits & 0x1:
                    yield Refused(name, "encrypted ZIP member", archive=state)
                    continue
                try:
                    with archive.open(info) as member:
                        yield self._member(name, state, member, info.file_size)
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
                    yield Refused(name, f"corrupt ZIP member: {exc}", archive=state)
                except NotImplementedError as exc:  # a compression method zipfile lacks
                    yield Refused(name, f"ZIP member not readable: {exc}", archive=state)
        self.bytes_read.add(max(0, found.size - counted))  # headers, central directory
        state.read = True
        yield ArchiveEnd(state)

    def _tar(self, found: FileFound, fp: IO[bytes], kind: Kind) -> Iterator[Item]:
        fp.seek(0)
        state = ArchiveState(found.path, found.size, found.mtime_ns)
        position = 0
        try:
            archive = tarfile.open(None, _TAR_MODES[kind], fileobj=fp)  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            self.bytes_read.add(found.size)
            what = "a tar archive" if kind is Kind.TAR else f"{kind.value} of a tar archive"
            yield Refused(found.path, f"not {what} ({exc}); a compressed single file is not read")
            return
        try:
            while True:
                try:
                    info = archive.next()
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    yield Refused(found.path, f"corrupt or truncated archive: {exc}", archive=state)
                    state.ok = False
                    break
                # streamed: tarfile keeps every member it has read; nothing here goes back
                archive.members.clear()  # type: ignore[attr-defined]
                now = fp.tell()
                self.bytes_read.add(now - position)
                position = now
                if info is None:
                    break
                if info.isdir():
                    continue
                name = f"{found.path}!{info.name}"
                if self.done(name, found.size, found.mtime_ns):
                    yield Skipped(name, info.size)
                    continue
                state.members += 1
                if not info.isreg():
                    yield Refused(name, "not a regular file (link or device)", True, state)
                    continue
                source = archive.extractfile(info)
                if source is None:  # pragma: no cover - isreg() members have data
                    continue
                try:
                    yield self._member(name, state, source, info.size)
                except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                    yield Refused(name, f"corrupt or truncated member: {exc}", archive=state)
        finally:
            archive.close()
        self.bytes_read.add(max(0, found.size - position))
        state.read = True
        yield ArchiveEnd(state)


def _not_dicom(head: bytes) -> str:
    if not head:
        return "empty file"
    return "not a DICOM file (no PS3.10 preamble and File Meta)"
