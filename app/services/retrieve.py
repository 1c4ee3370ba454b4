"""WADO-RS retrieve (PS3.18 §10.4): resolve a study, series or instance, then stream its files.

The use case runs in two phases so the HTTP status is fixed before the first byte (STYLE.md C5):

1. :meth:`RetrieveService.resolve` looks the target up in the index (one query) and raises
   :class:`~app.errors.NotFound` for an unknown resource; the database connection is released
   before it returns, so streaming never holds one. :func:`select` then decides which instances can
   be sent in the transfer syntax the client asked for.
2. :meth:`RetrieveService.open` / :meth:`RetrieveService.stream` read each blob from the object
   store chunk by chunk while it is being sent (memory stays bounded by the chunk size).

Transfer syntaxes, in this first slice (no transcoder yet): ``*`` sends the stored bytes; a UID
equal to the stored syntax sends the stored bytes; no syntax asked for means Explicit VR Little
Endian (NEG-07), so the stored bytes when stored that way. Anything else needs transcoding, so the
instance cannot be produced (WADO-03: the caller answers 206 or 406).

PS3.10 files on the way out: ingest keeps blobs exactly as received (STOW-17), and some STOW
clients (dicomweb-client among them) send the File Meta group without the 128-byte preamble and
``DICM`` prefix (PS3.10 §7.1). :meth:`RetrieveService.open` looks at the first 132 bytes of each
blob and, when the prefix is missing, sends ``bytes(128) + b"DICM"`` before the stored bytes, so
every instance we send is a complete PS3.10 file; its length grows by 132 accordingly.
"""

import hashlib
import re
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import IO

import anyio.to_thread
import orjson

from app.dicom.bulk import BulkValue, parse_bulk_path, read_bulk_value
from app.dicom.frames import repack_bits, swap_byte_order
from app.dicom.instance import FrameIndex
from app.dicom.uids import DEFLATED, EXPLICIT_VR_LITTLE_ENDIAN, VIDEO
from app.errors import BadRequest, Gone, NotAcceptable, NotFound
from app.index.db import Database
from app.index.retrieval import (
    FrameSource,
    InstanceRef,
    MetadataRow,
    locate,
    locate_frames,
    locate_metadata,
)
from app.services.delete import tombstoned
from app.storage.base import ObjectStore, StorageError

__all__ = [
    "ANY_TRANSFER_SYNTAX",
    "PS310_PREFIX",
    "BulkValue",
    "FrameSet",
    "InstanceRef",
    "MetadataRow",
    "Payload",
    "RetrieveService",
    "Selection",
    "metadata_document",
    "metadata_etag",
    "parse_frame_numbers",
    "producible",
    "select",
]

ANY_TRANSFER_SYNTAX = "*"
#: PS3.10 §7.1: a 128-byte preamble (zeros) and the "DICM" prefix open every DICOM file
PS310_PREFIX = bytes(128) + b"DICM"
_PREFIX_LENGTH = len(PS310_PREFIX)
#: a blob read for its bulk data stays in memory up to this size, then goes to a temp file
_BULK_SPOOL_MEMORY = 16 << 20


def producible(stored: str, requested: str | None) -> bool:
    """Whether an instance stored in ``stored`` can be sent in ``requested`` without transcoding.

    ``requested`` is None (the default, Explicit VR Little Endian, NEG-07), ``"*"`` (as stored,
    NEG-06) or a Transfer Syntax UID.

    >>> producible("1.2.840.10008.1.2.4.50", "*"), producible("1.2.840.10008.1.2.1", None)
    (True, True)
    >>> producible("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")
    False
    """
    if requested == ANY_TRANSFER_SYNTAX:
        return True
    return stored == (EXPLICIT_VR_LITTLE_ENDIAN if requested is None else requested)


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances to send for one transfer syntax request, and how many are left out."""

    refs: list[InstanceRef]
    omitted: int

    @property
    def transfer_syntax(self) -> str | None:
        """The syntax every selected instance is sent in, or None when they differ."""
        syntaxes = {ref.transfer_syntax_uid for ref in self.refs}
        return syntaxes.pop() if len(syntaxes) == 1 else None


def select(refs: Sequence[InstanceRef], requested: str | None) -> Selection:
    """Keep the instances that can be sent in ``requested`` (WADO-03), in their order."""
    kept = [ref for ref in refs if producible(ref.transfer_syntax_uid, requested)]
    return Selection(kept, len(refs) - len(kept))


@dataclass(frozen=True, slots=True)
class Payload:
    """One instance ready to send: its exact length and its bytes, read while they are sent."""

    ref: InstanceRef
    transfer_syntax: str
    length: int
    chunks: AsyncIterator[bytes]


def _not_found(series_uid: str | None, sop_uid: str | None) -> NotFound:
    level = "instance" if sop_uid else "series" if series_uid else "study"
    return NotFound(f"no such {level}")


class RetrieveService:
    """Resolves retrieve targets in the index and streams their blobs from the object store."""

    def __init__(self, db: Database, store: ObjectStore, *, chunk_size: int = 1 << 20) -> None:
        self._db = db
        self._store = store
        self._chunk_size = chunk_size

    async def resolve(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[InstanceRef]:
        """The target's instances in WADO-01 order; :class:`NotFound` if it does not exist."""
        async with self._db.read() as conn:
            refs = await locate(conn, study_uid, series_uid, sop_uid)
        if not refs:
            raise await self._absent(study_uid, series_uid, sop_uid)
        return refs

    async def _absent(
        self, study_uid: str, series_uid: str | None, sop_uid: str | None
    ) -> NotFound | Gone:
        """The error for a target not in the index: 410 while a tombstone lives (DEL-04)."""
        if await tombstoned(self._db, study_uid, series_uid, sop_uid):
            level = "instance" if sop_uid else "series" if series_uid else "study"
            return Gone(f"the {level} was deleted")
        return _not_found(series_uid, sop_uid)

    async def metadata(
        self, study_uid: str, series_uid: str | None = None, sop_uid: str | None = None
    ) -> list[MetadataRow]:
        """The target's stored metadata in WADO-01 order; :class:`NotFound` if it does not exist."""
        async with self._db.read() as conn:
            rows = await locate_metadata(conn, study_uid, series_uid, sop_uid)
        if not rows:
            raise await self._absent(study_uid, series_uid, sop_uid)
        return rows

    async def frames(
        self, study_uid: str, series_uid: str, sop_uid: str, numbers: Sequence[int]
    ) -> "FrameSet":
        """Check that frames ``numbers`` of an instance exist and can be read (FRM-01/06).

        :class:`NotFound` for an unknown instance, one without pixel data, or a frame number
        above NumberOfFrames; :class:`NotAcceptable` when the frames are not byte ranges of the
        stored file (video, deflated data set, unmappable fragments).
        """
        async with self._db.read() as conn:
            source = await locate_frames(conn, study_uid, series_uid, sop_uid)
        if source is None:
            raise await self._absent(study_uid, series_uid, sop_uid)
        if source.number_of_frames is None:
            raise NotFound("the instance has no pixel data, so no frames")
        beyond = [n for n in numbers if n > source.number_of_frames]
        if beyond:
            raise NotFound(
                f"frame {beyond[0]} does not exist: the instance has "
                f"{source.number_of_frames} frame(s)"
            )
        if source.transfer_syntax_uid in VIDEO:
            raise NotAcceptable(
                f"transfer syntax {source.transfer_syntax_uid} is a video stream: its frames "
                "cannot be retrieved one by one (FRM-06)"
            )
        if source.frame_index is None:
            raise NotAcceptable(
                f"the frames of this instance (transfer syntax {source.transfer_syntax_uid}) "
                "cannot be read separately"
            )
        index = FrameIndex.from_json(orjson.loads(source.frame_index))
        return FrameSet(source, index, tuple(numbers))

    async def read_frame(self, frames: "FrameSet", number: int) -> bytes:
        """Frame ``number`` (1-based): encapsulated as stored (fragments joined, FRM-04); native
        little endian, bit-packed frames starting at bit 0 (FRM-03)."""
        index = frames.index
        key = frames.source.blob_key
        pieces = [await self._store.get_range(key, o, n) for o, n in index.ranges[number - 1]]
        data = b"".join(pieces)
        expected = sum(n for _, n in index.ranges[number - 1])
        if len(data) != expected:
            raise StorageError(f"object {key} is shorter than its frame index says")
        if index.encapsulated:
            return data
        if index.swap_bytes:
            data = swap_byte_order(data, index.swap_bytes)
        if index.bit_offsets is not None:
            source = frames.source
            bits = (source.rows or 0) * (source.columns or 0)  # BitsAllocated 1: one sample
            data = repack_bits(data, index.bit_offsets[number - 1], bits)
        return data

    async def bulk(self, study_uid: str, series_uid: str, sop_uid: str, path: str) -> BulkValue:
        """The value a BulkDataURI ``.../bulkdata/{path}`` names (BULK-01/02, META-04).

        :class:`BadRequest` for a malformed ``path``, :class:`NotFound` for an unknown instance
        or a path that leads to no binary value. Bulk retrieval is rare, so the simple way: the
        blob is copied to a spool (memory, then a temp file) and parsed with pydicom in a worker
        thread, large values deferred so only the one asked for is read (see
        :mod:`app.dicom.bulk` for the bytes returned).
        """
        steps = parse_bulk_path(path)
        if steps is None:
            raise BadRequest(
                "invalid bulk data path: expected GGGGEEEE, optionally preceded by "
                "GGGGEEEE/item/ pairs for a value inside a sequence item"
            )
        refs = await self.resolve(study_uid, series_uid, sop_uid)
        ref = refs[0]
        spool = tempfile.SpooledTemporaryFile(max_size=_BULK_SPOOL_MEMORY)  # noqa: SIM115
        try:
            await self._copy(ref, spool)
            value = await anyio.to_thread.run_sync(
                lambda: read_bulk_value(
                    spool,  # type: ignore[arg-type]
                    steps,
                    deflated=ref.transfer_syntax_uid in DEFLATED,
                )
            )
        finally:
            await anyio.to_thread.run_sync(spool.close)
        if value is None:
            raise NotFound(f"the instance has no bulk data value at {path}")
        return value

    async def _copy(self, ref: InstanceRef, spool: IO[bytes]) -> None:
        """Copy the blob of ``ref`` into ``spool`` (rewound), checking its indexed size."""
        received = 0
        async for chunk in self.stream(ref):
            received += len(chunk)
            await anyio.to_thread.run_sync(spool.write, chunk)
        if received != ref.size:
            raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")
        spool.seek(0)

    def stream(self, ref: InstanceRef) -> AsyncIterator[bytes]:
        """The stored blob of ``ref``, chunk by chunk, exactly as stored."""
        return self._store.open(ref.blob_key, chunk_size=self._chunk_size)

    async def open(self, ref: InstanceRef) -> Payload:
        """``ref`` as a PS3.10 file (see the module docstring): its length, then its bytes.

        Only the first chunk is read here; the rest is read as the payload is consumed.
        """
        chunks = self.stream(ref)
        head = bytearray()
        try:
            while len(head) < _PREFIX_LENGTH:
                try:
                    head += await anext(chunks)
                except StopAsyncIteration:
                    break
        except BaseException:
            await _close(chunks)
            raise
        prefix = b"" if head[128:_PREFIX_LENGTH] == b"DICM" else PS310_PREFIX
        return Payload(
            ref,
            ref.transfer_syntax_uid,
            ref.size + len(prefix),
            _checked(ref, prefix, bytes(head), chunks),
        )


async def _checked(
    ref: InstanceRef, prefix: bytes, head: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``prefix + head``, then ``rest``; fails when the blob's size is not the indexed one.

    A truncated or replaced object must break the response rather than send a part whose
    Content-Length lies.
    """
    received = len(head)
    try:
        yield prefix + head
        async for chunk in rest:
            received += len(chunk)
            if received > ref.size:
                break
            yield chunk
    finally:
        await _close(rest)
    if received != ref.size:
        raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


@dataclass(frozen=True, slots=True)
class FrameSet:
    """Frames of one instance, checked to exist, with the byte ranges to read them."""

    source: FrameSource
    index: FrameIndex
    numbers: tuple[int, ...]

    @property
    def native(self) -> bool:
        return not self.index.encapsulated


_FRAME_LIST = re.compile(r"[0-9]+(?:,[0-9]+)*")


def parse_frame_numbers(text: str) -> list[int]:
    """The frame numbers of a ``{frames}`` path segment (FRM-01), or :class:`BadRequest`.

    >>> parse_frame_numbers("3,1,2")
    [3, 1, 2]
    >>> parse_frame_numbers("1,1")
    Traceback (most recent call last):
    ...
    app.errors.BadRequest: invalid frame list: frame 1 is listed twice
    """
    if not _FRAME_LIST.fullmatch(text) or len(text) > 10_000:
        raise BadRequest("invalid frame list: expected positive integers separated by commas")
    numbers = [int(piece) for piece in text.split(",")]
    seen: set[int] = set()
    for n in numbers:
        if n == 0:
            raise BadRequest("invalid frame list: frame numbers start at 1")
        if n in seen:
            raise BadRequest(f"invalid frame list: frame {n} is listed twice")
        seen.add(n)
    return numbers


_BULK_DATA_URI = b'"BulkDataURI":"'


def metadata_document(rows: Sequence[MetadataRow], base: str) -> bytes:
    """The JSON array of the rows' metadata with absolute BulkDataURIs (META-01/04).

    Spliced as bytes (see :mod:`app.dicom.instance`): no parsing, no re-encoding.

    >>> metadata_document([MetadataRow("a", b'{"x":{"BulkDataURI":"/studies/1"}}'),
    ...                    MetadataRow("b", b"{}")], "http://h/dw")
    b'[{"x":{"BulkDataURI":"http://h/dw/studies/1"}},{}]'
    """
    replacement = _BULK_DATA_URI + base.encode("utf-8")
    return (
        b"[" + b",".join(r.metadata_json.replace(_BULK_DATA_URI, replacement) for r in rows) + b"]"
    )


def metadata_etag(rows: Sequence[MetadataRow], base: str) -> str:
    """A strong entity tag of a metadata response: the instances' hashes and the base URL."""
    digest = hashlib.sha256(base.encode("utf-8"))
    for row in rows:
        digest.update(b"\0" + row.sha256.encode("ascii"))
    return f'"{digest.hexdigest()[:32]}"'
