"""Frames of an instance as byte ranges of its stored file (PS3.18 §10.4.1.1.4; FRM-01..07).

Ingest records where each frame lies in the stored file (:mod:`app.dicom.frames`), so a frame is
a ranged read: encapsulated frames as stored (fragments joined, FRM-04), native ones little
endian with bit-packed frames starting at bit 0 (FRM-03). Frames that are not byte ranges (a
deflated data set, fragments that could not be mapped) are decoded from the whole file, in
batches within the decode limits. Compressed frames asked for uncompressed (FRM-05) are decoded
one by one by the decoders, after their decoded size was checked against the limits from the
index's values, then from the instance's Image Pixel attributes (issue 19).
"""

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace

import orjson

from app.dicom.decoding import DecodeLimits
from app.dicom.frames import repack_bits, swap_byte_order
from app.dicom.instance import FrameIndex
from app.dicom.target import Target
from app.dicom.transcode import PixelModule, TranscodeError, can_decode, decode_frame, decode_frames
from app.dicom.uids import DEFLATED, NATIVE, VIDEO
from app.errors import DecodedSizeTooLarge, NotAcceptable, NotFound
from app.index.retrieval import FrameSource, instance_metadata, locate_frame_sources
from app.services.cache import SizedCache
from app.services.decoders import DecoderPool
from app.services.retrieve.context import RetrieveContext, stored_instead
from app.services.retrieve.plan import index_shape
from app.storage.base import StorageError

__all__ = ["FrameReader", "FrameSet"]


@dataclass(frozen=True, slots=True)
class FrameSet:
    """Frames of one instance, checked to exist, with the byte ranges to read them.

    ``index`` is None when the frames are not byte ranges of the stored file (a deflated data
    set, fragments that could not be mapped to frames): they are then decoded from the whole
    file. ``pixels`` is set by :meth:`FrameReader.prepare_decoding`.
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


class FrameReader:
    """Finds the frames of a target in the index and reads them from the object store."""

    def __init__(self, context: RetrieveContext) -> None:
        self._context = context

    async def frames(self, target: Target) -> FrameSet:
        """Check that frames ``numbers`` of an instance exist and can be read (FRM-01/06).

        :class:`NotFound` for an unknown instance, one without pixel data, or a frame number
        above NumberOfFrames; :class:`NotAcceptable` when the frames are not byte ranges of the
        stored file (video, deflated data set, unmappable fragments).
        """
        numbers = target.frames or ()
        sources = await locate_frame_sources(self._context.db, target)
        if not sources:
            raise await self._context.absent(target)
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
        frame_set = _frame_set(source, tuple(numbers), self._context.decode_limits)
        if frame_set is None:
            raise NotAcceptable(
                f"the frames of this instance (transfer syntax {source.transfer_syntax_uid}) "
                "cannot be read separately"
            )
        return frame_set

    async def pixel_sources(self, target: Target) -> tuple[list[FrameSet], int]:
        """Every frame of the target's instances that have pixel data (RES-08, FRM-07).

        Returns the frame sets in WADO-01 order and how many instances with pixel data cannot be
        read frame by frame (video, FRM-06; undecodable data). :class:`NotFound` when the target
        does not exist or none of its instances has pixel data.
        """
        sources = await locate_frame_sources(self._context.db, target)
        if not sources:
            raise await self._context.absent(target)
        with_pixels = [s for s in sources if s.number_of_frames is not None]
        if not with_pixels:
            raise NotFound("no pixel data: none of the instances has any")
        sets: list[FrameSet] = []
        for source in with_pixels:
            if source.transfer_syntax_uid in VIDEO or (source.number_of_frames or 0) < 1:
                continue
            # a range, not a tuple: NumberOfFrames indexed before ingest checked it may be huge
            numbers = range(1, (source.number_of_frames or 0) + 1)
            frame_set = _frame_set(source, numbers, self._context.decode_limits)
            if frame_set is not None:
                sets.append(frame_set)
        return sets, len(with_pixels) - len(sets)

    async def prepare_decoding(self, frames: FrameSet) -> FrameSet:
        """``frames`` with the Image Pixel attributes a codec needs (FRM-05), from the index.

        :class:`NotAcceptable` when one decoded frame would exceed the decode limits (its
        SamplesPerPixel known now): the stored frames are the way out.
        """
        if frames.pixels is not None or frames.index is None or not frames.index.encapsulated:
            return frames
        source = frames.source
        raw = await instance_metadata(
            self._context.db, Target(source.study_uid, source.series_uid, source.sop_uid)
        )
        pixels = PixelModule.from_dicom_json(orjson.loads(raw)) if raw else None
        if pixels is None:
            raise TranscodeError("the instance lacks the Image Pixel attributes to decode it")
        try:
            self._context.decode_limits.check_frame(pixels.shape)
        except DecodedSizeTooLarge as exc:
            raise stored_instead(exc) from None
        return replace(frames, pixels=pixels)

    async def iter_frames(self, frames: FrameSet, *, decode: bool) -> AsyncIterator[bytes]:
        """The frames of ``frames.numbers`` in that order (call :meth:`prepare_decoding` first
        when ``decode``): as stored (FRM-03/04), or decoded to native pixels (FRM-05)."""
        limits = self._context.decode_limits
        if frames.index is None:
            # not byte ranges of the blob (deflated, unmappable fragments): decode the file, in
            # batches whose decoded frames stay within the limit of what is decoded at once
            raw = await self._context.read_all(frames.source.blob_key, None)
            per_batch = max(1, limits.instance_bytes // max(1, frames.frame_bytes or 1))
            for start in range(0, len(frames.numbers), per_batch):
                batch = list(frames.numbers[start : start + per_batch])
                decoded = await self._context.decoders.run(
                    decode_frames,
                    raw,
                    batch,
                    limits,
                    limiter=self._context.decoding,
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
                    data = await self._context.decoders.run(
                        decode_frame,
                        data,
                        frames.source.transfer_syntax_uid,
                        pixels,
                        limits,
                        limiter=self._context.decoding,
                    )
                except DecodedSizeTooLarge as exc:  # the codestream said more than the header
                    raise stored_instead(exc) from None
            yield data

    async def read_frame(self, frames: FrameSet, number: int) -> bytes:
        """Frame ``number`` (1-based): encapsulated as stored (fragments joined, FRM-04); native
        little endian, bit-packed frames starting at bit 0 (FRM-03)."""
        index = frames.index
        if index is None:
            raise NotAcceptable("the frames of this instance are not byte ranges of its file")
        key = frames.source.blob_key
        ranges = index.ranges[number - 1]
        if len(ranges) == 1:  # native frames, single-fragment ones: no join, no copy
            [(offset, expected)] = ranges
            data = await self._context.store.get_range(key, offset, expected)
        else:
            pieces = [await self._context.store.get_range(key, o, n) for o, n in ranges]
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
