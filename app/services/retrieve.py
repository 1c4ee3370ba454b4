"""WADO-RS retrieve (PS3.18 §10.4): resolve a study, series or instance, then stream its files.

The use case runs in two phases so the HTTP status is fixed before the first byte (STYLE.md C5):

1. :meth:`RetrieveService.resolve` looks the target up in the index (one query) and raises
   :class:`~app.errors.NotFound` for an unknown resource; the database connection is released
   before it returns, so streaming never holds one. :func:`select` then decides, per instance,
   the transfer syntax it goes out in (:func:`app.dicom.transcode.output_syntax`), or that it
   cannot be produced (WADO-03: the caller answers 206 or 406).
2. :meth:`RetrieveService.open` / :meth:`RetrieveService.stream` read each blob from the object
   store chunk by chunk while it is being sent (memory stays bounded by the chunk size). An
   instance that needs transcoding (another syntax asked for, or NEG-08: Implicit VR / Big
   Endian never go out as such) is read whole and re-encoded in a worker thread, at most
   ``transcode_concurrency`` at once per process (:meth:`RetrieveService.transcode_instance`).

Transfer syntaxes (NEG-06..09): ``*`` sends the stored bytes (Implicit VR Little Endian and
Explicit VR Big Endian converted to Explicit VR Little Endian, NEG-08); a UID equal to the stored
syntax sends the stored bytes; no syntax asked for means Explicit VR Little Endian (NEG-07,
with the lossy and too-large exceptions of :mod:`app.dicom.transcode`); Explicit VR Little Endian
is produced from every syntax the decoders read; other syntaxes are not produced (406).

PS3.10 files on the way out: ingest keeps blobs exactly as received (STOW-17), and some STOW
clients (dicomweb-client among them) send the File Meta group without the 128-byte preamble and
``DICM`` prefix (PS3.10 §7.1). :meth:`RetrieveService.open` looks at the first 132 bytes of each
blob and, when the prefix is missing, sends ``bytes(128) + b"DICM"`` before the stored bytes, so
every instance we send is a complete PS3.10 file; its length grows by 132 accordingly.

Decoding (issue 19): what a decode would allocate is bounded before any decoder runs
(:mod:`app.dicom.decoding`), first from the values the index keeps (:func:`index_shape`, for
instances indexed before the ingest checks too), then, in the decoding function itself, from the
file's own attributes and codestream headers. An instance too large to decode is sent as stored
by default and left out when another syntax is asked for (406 with the reason); its frames are
sent as stored, or refused with 406 and the reason (a deflated data set has no stored frames).
Native codecs run in worker processes (:mod:`app.services.decoders`).

Metadata (META-01..05): spliced from stored JSON; documents are cached per process by entity tag
(the tag is a hash of the instances' content hashes and the base URL, so an entry is never stale),
plain and gzipped, which makes a repeated series ``/metadata`` one small index query.
"""

import gzip
import hashlib
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from typing import IO

import anyio
import anyio.to_thread
import orjson

from app.dicom.bulk import BulkValue, bulk_paths, parse_bulk_path, read_bulk_values
from app.dicom.decoding import DEFAULT_LIMITS, DecodeLimits, PixelShape
from app.dicom.frames import repack_bits, swap_byte_order
from app.dicom.instance import FrameIndex
from app.dicom.parse import PART10_PREAMBLE, PART10_PREFIX_LENGTH, has_part10_prefix
from app.dicom.target import Target
from app.dicom.transcode import (
    PixelModule,
    TranscodeError,
    can_decode,
    decode_frame,
    decode_frames,
    output_syntax,
    transcode,
)
from app.dicom.uids import DEFLATED, ENCAPSULATED, NATIVE, VIDEO
from app.errors import BadRequest, DecodedSizeTooLarge, Gone, NotAcceptable, NotFound
from app.index.db import Database
from app.index.retrieval import (
    FrameSource,
    InstanceRef,
    MetadataRow,
    instance_metadata,
    locate,
    locate_frame_sources,
    locate_hashes,
    locate_metadata,
    locate_with_metadata,
)
from app.services.cache import ByteCache, SizedCache
from app.services.decoders import DecoderPool
from app.services.delete import tombstoned
from app.storage.base import ObjectStore, StorageError

__all__ = [
    "ANY_TRANSFER_SYNTAX",
    "PS310_PREFIX",
    "BulkItem",
    "BulkValue",
    "FrameSet",
    "InstanceRef",
    "MetadataRow",
    "Payload",
    "Planned",
    "RetrieveService",
    "Selection",
    "TranscodeError",
    "gzip_etag",
    "metadata_document",
    "metadata_etag",
    "producible",
    "select",
    "stored_length",
]

ANY_TRANSFER_SYNTAX = "*"
#: PS3.10 §7.1: a 128-byte preamble (zeros) and the "DICM" prefix open every DICOM file
PS310_PREFIX = bytes(PART10_PREAMBLE) + b"DICM"
#: a blob read for its bulk data stays in memory up to this size, then goes to a temp file
_BULK_SPOOL_MEMORY = 16 << 20


def index_shape(
    rows: int | None,
    columns: int | None,
    bits_allocated: int | None,
    number_of_frames: int | None,
) -> PixelShape | None:
    """The decoded size of an instance from the index's values, or None when unknown.

    A lower bound: the index keeps no SamplesPerPixel (one is assumed); the exact check runs
    where the attributes are read. NumberOfFrames below 1 (indexed before ingest checked it)
    counts as 1.

    >>> index_shape(40000, 40000, 16, 1).frame_bytes
    3200000000
    """
    if not (rows and columns and bits_allocated) or min(rows, columns, bits_allocated) < 1:
        return None
    return PixelShape(rows, columns, 1, bits_allocated, max(1, number_of_frames or 1))


def decode_refusal(ref: InstanceRef, limits: DecodeLimits) -> str | None:
    """Why transcoding ``ref`` whole would exceed ``limits`` (None: it would not, or nothing of
    it is decoded: native syntaxes are re-encoded, not decoded)."""
    if ref.number_of_frames is None or ref.transfer_syntax_uid not in ENCAPSULATED | DEFLATED:
        return None
    shape = index_shape(ref.rows, ref.columns, ref.bits_allocated, ref.number_of_frames)
    if shape is None:
        return None
    try:
        limits.check_instance(shape)
    except DecodedSizeTooLarge as exc:
        return exc.message
    return None


def native_pixel_bytes(ref: InstanceRef) -> int | None:
    """A lower bound of the instance's decoded pixel data size (one sample per pixel)."""
    if None in (ref.rows, ref.columns, ref.bits_allocated, ref.number_of_frames):
        return None
    return (
        (ref.rows or 0)
        * (ref.columns or 0)
        * (ref.bits_allocated or 0)
        * (ref.number_of_frames or 0)
    ) // 8


def stored_length(ref: InstanceRef) -> int | None:
    """The length of ``ref`` sent as stored, a PS3.10 file (see :meth:`RetrieveService.open`),
    known without reading its blob; None for instances indexed before that was recorded.

    >>> ref = InstanceRef("1", "2", "3", "k", 1000, "1.2.840.10008.1.2.1", part10_prefix=False)
    >>> stored_length(ref)
    1132
    """
    if ref.part10_prefix is None:
        return None
    return ref.size + (0 if ref.part10_prefix else PART10_PREFIX_LENGTH)


def plan(ref: InstanceRef, requested: str | None, limits: DecodeLimits | None = None) -> str | None:
    """The syntax ``ref`` goes out in when ``requested`` is asked for; None if not producible.

    ``requested`` is None (the default, NEG-07), ``"*"`` (as stored, NEG-06) or a UID;
    ``limits`` bound what decoding it may take (:func:`decode_refusal`).
    """
    return output_syntax(
        ref.transfer_syntax_uid,
        requested,
        has_pixels=ref.number_of_frames is not None,
        native_pixel_bytes=native_pixel_bytes(ref),
        within_limits=limits is None or decode_refusal(ref, limits) is None,
    )


def producible(stored: str, requested: str | None) -> bool:
    """Whether an instance stored in ``stored`` can be sent when ``requested`` is asked for.

    >>> producible("1.2.840.10008.1.2.4.50", "*"), producible("1.2.840.10008.1.2.1", None)
    (True, True)
    >>> producible("1.2.840.10008.1.2.1", "1.2.840.10008.1.2.4.50")
    False
    """
    return output_syntax(stored, requested) is not None


@dataclass(frozen=True, slots=True)
class Planned:
    """One instance to send and the transfer syntax it goes out in."""

    ref: InstanceRef
    transfer_syntax: str

    @property
    def transcoded(self) -> bool:
        return self.transfer_syntax != self.ref.transfer_syntax_uid


@dataclass(frozen=True, slots=True)
class Selection:
    """The instances to send for one transfer syntax request, and how many are left out."""

    items: list[Planned]
    omitted: int

    @property
    def refs(self) -> list[InstanceRef]:
        return [item.ref for item in self.items]

    @property
    def transfer_syntax(self) -> str | None:
        """The syntax every selected instance is sent in, or None when they differ."""
        syntaxes = {item.transfer_syntax for item in self.items}
        return syntaxes.pop() if len(syntaxes) == 1 else None


def select(
    refs: Sequence[InstanceRef], requested: str | None, limits: DecodeLimits | None = None
) -> Selection:
    """Plan the instances that can be sent for ``requested`` (WADO-03), in their order."""
    items: list[Planned] = []
    for ref in refs:
        syntax = plan(ref, requested, limits)
        if syntax is not None:
            items.append(Planned(ref, syntax))
    return Selection(items, len(refs) - len(items))


@dataclass(frozen=True, slots=True)
class Payload:
    """One instance ready to send: its exact length and its bytes, read while they are sent."""

    ref: InstanceRef
    transfer_syntax: str
    length: int
    chunks: AsyncIterator[bytes]
    #: the blob's own stream under ``chunks`` (open while unread: an unstarted generator's
    #: ``aclose`` runs none of its body, so ``chunks`` alone cannot release it)
    source: AsyncIterator[bytes] | None = None

    async def close(self) -> None:
        """Release the blob (a payload opened but never sent, or sent in part)."""
        await _close(self.chunks)
        if self.source is not None:
            await _close(self.source)


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """A metadata response body and its entity tag (strong; a gzip body has its own tag)."""

    etag: str
    body: bytes


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One bulk data value of a study/series/instance ``/bulkdata`` answer (BULK-03)."""

    ref: InstanceRef
    path: str  # ``tag(/item/tag)*`` under the instance's ``/bulkdata``
    value: BulkValue


class RetrieveService:
    """Resolves retrieve targets in the index and streams their blobs from the object store."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        *,
        chunk_size: int = 1 << 20,
        transcode_concurrency: int = 2,
        metadata_cache_bytes: int = 64 << 20,
        decode_limits: DecodeLimits = DEFAULT_LIMITS,
        decoders: DecoderPool | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._chunk_size = chunk_size
        self._decoding = anyio.CapacityLimiter(max(1, transcode_concurrency))
        self._metadata_cache = ByteCache(metadata_cache_bytes)
        self.decode_limits = decode_limits
        self.decoders = decoders or DecoderPool(0)

    def select(self, refs: Sequence[InstanceRef], requested: str | None) -> Selection:
        """:func:`select` under this service's decode limits."""
        return select(refs, requested, self.decode_limits)

    def decode_refusal(self, refs: Sequence[InstanceRef]) -> str | None:
        """Why some of ``refs`` cannot be transcoded (the decode limits), for a 406's reason."""
        reasons = (decode_refusal(ref, self.decode_limits) for ref in refs)
        return next((reason for reason in reasons if reason), None)

    async def resolve(self, target: Target) -> list[InstanceRef]:
        """The target's instances in WADO-01 order; :class:`NotFound` if it does not exist."""
        refs = await locate(self._db, target)
        if not refs:
            raise await self.absent(target)
        return refs

    async def absent(self, target: Target) -> NotFound | Gone:
        """The error for a target not in the index: 410 while a tombstone lives (DEL-04)."""
        if await tombstoned(self._db, target):
            return Gone(f"the {target.noun} was deleted")
        return NotFound(f"no such {target.noun}")

    async def metadata(self, target: Target) -> list[MetadataRow]:
        """The target's stored metadata in WADO-01 order; :class:`NotFound` if it does not exist."""
        rows = await locate_metadata(self._db, target)
        if not rows:
            raise await self.absent(target)
        return rows

    async def frames(self, target: Target) -> "FrameSet":
        """Check that frames ``numbers`` of an instance exist and can be read (FRM-01/06).

        :class:`NotFound` for an unknown instance, one without pixel data, or a frame number
        above NumberOfFrames; :class:`NotAcceptable` when the frames are not byte ranges of the
        stored file (video, deflated data set, unmappable fragments).
        """
        numbers = target.frames or ()
        sources = await locate_frame_sources(self._db, target)
        if not sources:
            raise await self.absent(target)
        source = sources[0]
        if source.number_of_frames is None:
            raise NotFound("the instance has no pixel data, so no frames")
        if source.number_of_frames < 1:  # indexed before ingest refused such counts
            raise NotAcceptable(
                f"the instance's NumberOfFrames ({source.number_of_frames}) is not a positive "
                "integer: its frames cannot be read"
            )
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
        frame_set = _frame_set(source, tuple(numbers), self.decode_limits)
        if frame_set is None:
            raise NotAcceptable(
                f"the frames of this instance (transfer syntax {source.transfer_syntax_uid}) "
                "cannot be read separately"
            )
        return frame_set

    async def pixel_sources(self, target: Target) -> tuple[list["FrameSet"], int]:
        """Every frame of the target's instances that have pixel data (RES-08, FRM-07).

        Returns the frame sets in WADO-01 order and how many instances with pixel data cannot be
        read frame by frame (video, FRM-06; undecodable data). :class:`NotFound` when the target
        does not exist or none of its instances has pixel data.
        """
        sources = await locate_frame_sources(self._db, target)
        if not sources:
            raise await self.absent(target)
        with_pixels = [s for s in sources if s.number_of_frames is not None]
        if not with_pixels:
            raise NotFound("no pixel data: none of the instances has any")
        sets: list[FrameSet] = []
        for source in with_pixels:
            if source.transfer_syntax_uid in VIDEO or (source.number_of_frames or 0) < 1:
                continue
            # a range, not a tuple: NumberOfFrames indexed before ingest checked it may be huge
            numbers = range(1, (source.number_of_frames or 0) + 1)
            frame_set = _frame_set(source, numbers, self.decode_limits)
            if frame_set is not None:
                sets.append(frame_set)
        return sets, len(with_pixels) - len(sets)

    async def prepare_decoding(self, frames: "FrameSet") -> "FrameSet":
        """``frames`` with the Image Pixel attributes a codec needs (FRM-05), from the index.

        :class:`NotAcceptable` when one decoded frame would exceed the decode limits (its
        SamplesPerPixel known now): the stored frames are the way out.
        """
        if frames.pixels is not None or frames.index is None or not frames.index.encapsulated:
            return frames
        source = frames.source
        raw = await instance_metadata(
            self._db, Target(source.study_uid, source.series_uid, source.sop_uid)
        )
        pixels = PixelModule.from_dicom_json(orjson.loads(raw)) if raw else None
        if pixels is None:
            raise TranscodeError("the instance lacks the Image Pixel attributes to decode it")
        try:
            self.decode_limits.check_frame(pixels.shape)
        except DecodedSizeTooLarge as exc:
            raise _stored_instead(exc) from None
        return replace(frames, pixels=pixels)

    async def iter_frames(self, frames: "FrameSet", *, decode: bool) -> AsyncIterator[bytes]:
        """The frames of ``frames.numbers`` in that order (call :meth:`prepare_decoding` first
        when ``decode``): as stored (FRM-03/04), or decoded to native pixels (FRM-05)."""
        limits = self.decode_limits
        if frames.index is None:
            # not byte ranges of the blob (deflated, unmappable fragments): decode the file, in
            # batches whose decoded frames stay within the limit of what is decoded at once
            raw = await self._read_all(frames.source.blob_key, None)
            per_batch = max(1, limits.instance_bytes // max(1, frames.frame_bytes or 1))
            for start in range(0, len(frames.numbers), per_batch):
                batch = list(frames.numbers[start : start + per_batch])
                decoded = await self.decoders.run(
                    decode_frames,
                    raw,
                    batch,
                    limits,
                    limiter=self._decoding,
                    isolate=DecoderPool.needed(frames.source.transfer_syntax_uid),
                )
                for data in decoded:
                    yield data
            return
        for number in frames.numbers:
            data = await self.read_frame(frames, number)
            if decode and frames.index.encapsulated:
                pixels = frames.pixels
                if pixels is None:
                    raise TranscodeError("the frames cannot be decoded: call prepare_decoding")
                try:
                    data = await self.decoders.run(
                        decode_frame,
                        data,
                        frames.source.transfer_syntax_uid,
                        pixels,
                        limits,
                        limiter=self._decoding,
                    )
                except DecodedSizeTooLarge as exc:  # the codestream said more than the header
                    raise _stored_instead(exc) from None
            yield data

    async def read_frame(self, frames: "FrameSet", number: int) -> bytes:
        """Frame ``number`` (1-based): encapsulated as stored (fragments joined, FRM-04); native
        little endian, bit-packed frames starting at bit 0 (FRM-03)."""
        index = frames.index
        if index is None:
            raise NotAcceptable("the frames of this instance are not byte ranges of its file")
        key = frames.source.blob_key
        ranges = index.ranges[number - 1]
        if len(ranges) == 1:  # native frames, single-fragment ones: no join, no copy
            [(offset, expected)] = ranges
            data = await self._store.get_range(key, offset, expected)
        else:
            pieces = [await self._store.get_range(key, o, n) for o, n in ranges]
            data = b"".join(pieces)
            expected = sum(n for _, n in ranges)
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

    async def bulk(self, target: Target, path: str) -> BulkValue:
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
        refs = await self.resolve(target)
        ref = refs[0]
        [value] = await self._bulk_values(ref, [steps])
        if value is None:
            raise NotFound(f"the instance has no bulk data value at {path}")
        return value

    async def bulk_targets(self, target: Target) -> list[tuple[InstanceRef, list[str]]]:
        """The target's instances with the bulk data paths of their metadata (BULK-03).

        :class:`NotFound` when the target does not exist or has no bulk data at all.
        """
        rows = await locate_with_metadata(self._db, target)
        if not rows:
            raise await self.absent(target)
        targets = [(ref, bulk_paths(raw)) for ref, raw in rows]
        targets = [(ref, paths) for ref, paths in targets if paths]
        if not targets:
            raise NotFound("no bulk data: the metadata of the target has no BulkDataURI")
        return targets

    async def iter_bulk(
        self, targets: Sequence[tuple[InstanceRef, list[str]]]
    ) -> AsyncIterator[BulkItem]:
        """Every bulk value of ``targets``, instance by instance (each blob read once)."""
        for ref, paths in targets:
            steps = [parse_bulk_path(path) for path in paths]
            values = await self._bulk_values(ref, [s for s in steps if s is not None])
            kept = [p for p, s in zip(paths, steps, strict=True) if s is not None]
            for path, value in zip(kept, values, strict=True):
                if value is not None:
                    yield BulkItem(ref, path, value)

    async def _bulk_values(
        self, ref: InstanceRef, steps: Sequence[Sequence[int]]
    ) -> list[BulkValue | None]:
        spool = tempfile.SpooledTemporaryFile(max_size=_BULK_SPOOL_MEMORY)  # noqa: SIM115
        try:
            await self._copy(ref, spool)
            return await anyio.to_thread.run_sync(
                lambda: read_bulk_values(
                    spool,  # type: ignore[arg-type]
                    steps,
                    deflated=ref.transfer_syntax_uid in DEFLATED,
                )
            )
        finally:
            await anyio.to_thread.run_sync(spool.close)

    # --- metadata (META-01..05) ---

    async def metadata_tag(self, base: str, target: Target) -> str:
        """The entity tag of the target's metadata (one small query); :class:`NotFound`."""
        hashes = await locate_hashes(self._db, target)
        if not hashes:
            raise await self.absent(target)
        return _etag(hashes, base)

    async def metadata_document(
        self,
        base: str,
        target: Target,
        *,
        etag: str | None = None,
        gzipped: bool = False,
    ) -> MetadataDocument:
        """The target's metadata array with absolute BulkDataURIs, gzipped if asked (GEN-08).

        ``etag`` (from :meth:`metadata_tag`) lets a cached document be answered without reading
        the stored JSON; the returned tag is the one of the rows actually read.
        """
        if etag is not None:
            cached = self._metadata_cache.get((etag, gzipped))
            if cached is not None:
                return MetadataDocument(_variant(etag, gzipped), cached)
        rows = await self.metadata(target)
        tag = metadata_etag(rows, base)
        plain = self._metadata_cache.get((tag, False))
        if plain is None:
            plain = metadata_document(rows, base)
            self._metadata_cache.put((tag, False), plain)
        del rows
        if not gzipped:
            return MetadataDocument(tag, plain)
        body = await anyio.to_thread.run_sync(lambda: gzip.compress(plain, compresslevel=6))
        self._metadata_cache.put((tag, True), body)
        return MetadataDocument(_variant(tag, True), body)

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

    async def _read_all(self, key: str, size: int | None) -> bytes:
        """A whole blob in memory (for transcoding), checked against its indexed size."""
        buffer = bytearray()
        async for chunk in self._store.open(key, chunk_size=self._chunk_size):
            buffer += chunk
        if size is not None and len(buffer) != size:
            raise StorageError(f"object {key} does not hold the {size} bytes indexed")
        return bytes(buffer)

    async def transcode_instance(self, ref: InstanceRef, transfer_syntax: str) -> bytes:
        """``ref`` as a PS3.10 file in ``transfer_syntax`` (WADO-02/04, NEG-08/09).

        The blob is read whole and re-encoded in a worker thread (at most
        ``transcode_concurrency`` at once). :class:`~app.dicom.transcode.TranscodeError` (406)
        when it cannot be produced. For WADO-RS and WADO-URI alike.
        """
        refusal = decode_refusal(ref, self.decode_limits)
        if refusal is not None:
            raise NotAcceptable(f"{refusal}; it can be retrieved as stored (transfer-syntax=*)")
        raw = await self._read_all(ref.blob_key, ref.size)
        try:
            return await self.decoders.run(
                transcode,
                raw,
                transfer_syntax,
                self.decode_limits,
                limiter=self._decoding,
                isolate=DecoderPool.needed(ref.transfer_syntax_uid),
            )
        except DecodedSizeTooLarge as exc:
            raise _stored_instead(exc, "it") from None

    async def open(self, ref: InstanceRef, transfer_syntax: str | None = None) -> Payload:
        """``ref`` as a PS3.10 file (see the module docstring): its length, then its bytes.

        ``transfer_syntax`` (from :func:`select`) other than the stored one means the instance
        is transcoded here, whole, before this returns. Otherwise only the first chunk is read
        here; the rest is read as the payload is consumed.
        """
        if transfer_syntax is not None and transfer_syntax != ref.transfer_syntax_uid:
            data = await self.transcode_instance(ref, transfer_syntax)
            return Payload(ref, transfer_syntax, len(data), _once(data))
        chunks = self.stream(ref)
        pieces: list[bytes] = []
        received = 0
        try:
            while received < PART10_PREFIX_LENGTH:
                try:
                    piece = await anext(chunks)
                except StopAsyncIteration:
                    break
                pieces.append(piece)
                received += len(piece)
        except BaseException:
            await _close(chunks)
            raise
        # normally one chunk (the whole of a small blob): sent as read, not copied
        head = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        prefix = b"" if has_part10_prefix(head) else PS310_PREFIX
        if ref.part10_prefix is not None and bool(ref.part10_prefix) == bool(prefix):
            # the length announced from the index (stored_length) would be wrong
            await _close(chunks)
            raise StorageError(f"object {ref.blob_key} does not begin as its index entry says")
        return Payload(
            ref,
            ref.transfer_syntax_uid,
            ref.size + len(prefix),
            _checked(ref, prefix, head, chunks),
            chunks,
        )


async def _checked(
    ref: InstanceRef, prefix: bytes, head: bytes, rest: AsyncIterator[bytes]
) -> AsyncIterator[bytes]:
    """``prefix`` and ``head``, then ``rest``; fails when the blob's size is not the indexed one.

    A truncated or replaced object must break the response rather than send a part whose
    Content-Length lies.
    """
    received = len(head)
    try:
        if received > ref.size:
            raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")
        if prefix:
            yield prefix
        if head:
            yield head
        async for chunk in rest:
            received += len(chunk)
            if received > ref.size:
                break
            yield chunk
    finally:
        await _close(rest)
    if received != ref.size:
        raise StorageError(f"object {ref.blob_key} does not hold the {ref.size} bytes indexed")


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _close(chunks: AsyncIterator[bytes]) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        await aclose()


@dataclass(frozen=True, slots=True)
class FrameSet:
    """Frames of one instance, checked to exist, with the byte ranges to read them.

    ``index`` is None when the frames are not byte ranges of the stored file (a deflated data
    set, fragments that could not be mapped to frames): they are then decoded from the whole
    file. ``pixels`` is set by :meth:`RetrieveService.prepare_decoding`.
    """

    source: FrameSource
    index: FrameIndex | None
    numbers: Sequence[int]
    pixels: PixelModule | None = field(default=None)
    #: why decoding these frames is refused (the decode limits, by the index's values), if it is
    refusal: str | None = None

    @property
    def native(self) -> bool:
        """Whether the frames are native pixels (as stored, or once the data set is inflated)."""
        if self.index is None:
            return self.source.transfer_syntax_uid in NATIVE | DEFLATED
        return not self.index.encapsulated

    @property
    def as_stored(self) -> bool:
        """Whether the frames can be sent as stored (native ones: little endian, FRM-03)."""
        if self.index is None:  # inflated or decoded from the whole file: a decode
            return self.native and self.refusal is None
        return True

    @property
    def decodable(self) -> bool:
        """Whether the frames can be decoded to native pixels (FRM-05)."""
        if self.refusal is not None:
            return False
        return self.native or can_decode(self.source.transfer_syntax_uid)

    @property
    def frame_bytes(self) -> int | None:
        """A lower bound of one decoded frame's size, from the index (None: unknown)."""
        source = self.source
        shape = index_shape(source.rows, source.columns, source.bits_allocated, 1)
        return None if shape is None else shape.frame_bytes


#: parsed frame indexes keyed by their stored JSON (so never stale), bounded by the JSON kept
#: (the parsed form is of the same order): a multi-frame instance's index is parsed once
_FRAME_INDEX_BYTES = 8 << 20
_FRAME_INDEXES = SizedCache[bytes, FrameIndex](_FRAME_INDEX_BYTES, lambda raw, _index: len(raw))


def _frame_index(raw: bytes) -> FrameIndex:
    index = _FRAME_INDEXES.get(raw)
    if index is None:
        index = FrameIndex.from_json(orjson.loads(raw))
        if len(raw) <= _FRAME_INDEX_BYTES // 16:  # one huge index never pushes out all the others
            _FRAME_INDEXES.put(raw, index)
    return index


def _frame_set(
    source: FrameSource, numbers: Sequence[int], limits: DecodeLimits
) -> FrameSet | None:
    """The frames of ``source`` if they can be read at all (else None), with the reason their
    decoding is refused if it is (:attr:`FrameSet.refusal`)."""
    count = source.number_of_frames or 0
    if source.frame_index is not None:
        index = _frame_index(source.frame_index)
        if len(index.ranges) != count:  # indexed before ingest checked NumberOfFrames
            return None
        frame_set = FrameSet(source, index, numbers)
    else:
        frame_set = FrameSet(source, None, numbers)
        syntax = source.transfer_syntax_uid
        if syntax in VIDEO or not (frame_set.native or can_decode(syntax)):
            return None
    if frame_set.index is not None and frame_set.native:
        return frame_set  # byte ranges of native pixels: nothing is decoded
    shape = index_shape(source.rows, source.columns, source.bits_allocated, count)
    if shape is None:
        return frame_set
    try:
        if source.transfer_syntax_uid in DEFLATED:
            limits.check_instance(shape)  # the whole data set is inflated to read a frame
        else:
            limits.check_frame(shape)
    except DecodedSizeTooLarge as exc:
        return replace(frame_set, refusal=exc.message)
    return frame_set


def _stored_instead(exc: DecodedSizeTooLarge, what: str = "its frames") -> NotAcceptable:
    """406 for a decode refused by the limits where the stored form can be sent instead."""
    return NotAcceptable(f"{exc.message}; {what} can be retrieved as stored (transfer-syntax=*)")


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
    return _etag([row.sha256 for row in rows], base)


def _etag(hashes: Sequence[str], base: str) -> str:
    digest = hashlib.sha256(base.encode("utf-8"))
    for sha in hashes:
        digest.update(b"\0" + sha.encode("ascii"))
    return f'"{digest.hexdigest()[:32]}"'


def gzip_etag(etag: str) -> str:
    """The tag of the gzip representation, which differs from the plain one (RFC 9110 §8.8.3).

    >>> gzip_etag('"abc"')
    '"abc-gzip"'
    """
    return f'{etag[:-1]}-gzip"'


def _variant(etag: str, gzipped: bool) -> str:
    return gzip_etag(etag) if gzipped else etag
