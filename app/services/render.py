"""RenderService: rendered resources, thumbnails and WADO-URI objects (REND, THUMB, URI).

Targets are resolved through the index (:mod:`app.index.rendering`, on the joins of
:mod:`app.index.retrieval`), blobs are read through :class:`RetrieveService` (same size checks,
same PS3.10 prefix handling), and the CPU work (decode, window, scale, encode;
:mod:`app.dicom.render`) runs in worker threads behind an :class:`anyio.CapacityLimiter` (in a
decoder process for compressed pixel data), so the event loop never blocks and at most
``concurrency`` renderings run at once.

Results are cached in a bounded in-memory LRU (:class:`~app.services.cache.ByteCache`) keyed by
the instance's content hash (sha256), the frames and the normalised parameters: a hit skips the
blob read and the rendering. The cache is an optimisation only; the ETag (REND-09) is computed
from the same key whether or not the bytes are cached.

Decoding is bounded (issue 19): a frame is rendered only when its decoded size, first from the
index's values, then from the file's attributes and codestream headers, is within the decode
limits (:class:`~app.errors.DecodedSizeTooLarge`, 413, beyond; WADO-URI ``application/dicom``
answers 406 instead, the stored syntax being the way out). Compressed pixel data is decoded and
rendered in the decoder processes of :mod:`app.services.decoders`, so a codec crash fails one
request (422).
"""

import hashlib
import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import anyio
import numpy as np
from pydicom import Dataset, dcmwrite
from pydicom.pixels.utils import pixel_array
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from app.dicom import render as rendering
from app.dicom.anonymize import CannotAnonymize, anonymize
from app.dicom.decoding import DEFAULT_LIMITS, DecodeLimits
from app.dicom.render import ObjectKind, OutputLimits, RenderParameterError, RenderParams
from app.dicom.target import Target
from app.dicom.transcode import TranscodeError, check_decodable, transcode
from app.dicom.uids import DEFLATED
from app.errors import (
    BadRequest,
    DecodedSizeTooLarge,
    DecoderFailed,
    NotAcceptable,
    NotFound,
)
from app.index.db import Database
from app.index.rendering import RenderSource, locate_render_sources
from app.services.cache import ByteCache
from app.services.decoders import DecoderPool
from app.services.retrieve import RetrieveService, decode_refusal, index_shape
from app.storage.base import ObjectStore, StorageError

__all__ = [
    "NATIVE_SYNTAXES",
    "RenderService",
    "RenderSource",
    "Rendered",
    "kind",
    "render_etag",
    "thumbnail_choice",
]

#: the syntaxes WADO-URI can produce by decoding and re-encoding (no transcoder here yet)
NATIVE_SYNTAXES = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})
#: default thumbnail box (THUMB-02: longest edge 128 px)
THUMBNAIL_SIZE = 128


def kind(source: RenderSource) -> str:
    """The :class:`~app.dicom.render.ObjectKind` of an indexed instance."""
    return rendering.kind_of(source.sop_class_uid, source.number_of_frames is not None)


def render_etag(sources: Sequence[RenderSource], key: str) -> str:
    """A strong ETag from the instances' content hashes and the normalised parameters.

    >>> from app.index.retrieval import InstanceRef
    >>> s = RenderSource(InstanceRef("1", "2", "3", "k", 1, "1.2"), "ab", "1.2", 1, 1, 1)
    >>> render_etag([s], "p") == render_etag([s], "p") != render_etag([s], "q")
    True
    """
    digest = hashlib.sha256(key.encode("utf-8"))
    for source in sources:
        digest.update(b"\0" + source.sha256.encode("ascii"))
    return f'"{digest.hexdigest()[:32]}"'


def thumbnail_choice(sources: Sequence[RenderSource]) -> tuple[RenderSource, int] | None:
    """THUMB-02: the representative instance and frame of a study, series or instance.

    ``sources`` come in WADO-01 order (SeriesNumber, InstanceNumber). The first series holding
    images is taken, then its middle image by InstanceNumber, then that image's middle frame.
    None when there is no image.

    >>> from app.index.retrieval import InstanceRef
    >>> def s(series, n, frames=1):
    ...     return RenderSource(InstanceRef("1", series, f"{series}.{n}", "k", 1, "1.2"), "h",
    ...                         "1.2.840.10008.5.1.4.1.1.2", frames, int(series), n)
    >>> src, frame = thumbnail_choice([s("1", 1), s("1", 2, 9), s("1", 3), s("2", 1)])
    >>> (src.ref.sop_uid, frame)
    ('1.2', 5)
    """
    images = [s for s in sources if kind(s) == ObjectKind.IMAGE]
    if not images:
        return None
    series = images[0].ref.series_uid
    in_series = [s for s in images if s.ref.series_uid == series]
    chosen = in_series[(len(in_series) - 1) // 2]
    frames = chosen.number_of_frames or 1
    return chosen, (frames + 1) // 2


@dataclass(frozen=True, slots=True)
class Rendered:
    """Rendered bytes and their media type."""

    data: bytes
    media_type: str


def _decode_all(ds: Dataset) -> np.ndarray:
    return np.asarray(pixel_array(ds))


class RenderService:
    """Renders instances of the index (REND-01..10, THUMB-01..02) and serves WADO-URI objects."""

    def __init__(
        self,
        db: Database,
        store: ObjectStore,
        retrieve: RetrieveService,
        *,
        concurrency: int = 2,
        cache_bytes: int = 64 << 20,
        max_source_bytes: int = 1 << 30,
        limits: OutputLimits = rendering.DEFAULT_LIMITS,
        anonymize_salt: bytes | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._retrieve = retrieve
        self._limiter = anyio.CapacityLimiter(max(1, concurrency))
        self._cache = ByteCache(cache_bytes)
        self._max_source = max_source_bytes
        #: how large an output may be; the front ends check requests against it too (400)
        self.limits = limits
        #: salt of the UID replacement of ``anonymize=yes``: configured, else random per process
        self._salt = anonymize_salt or secrets.token_bytes(32)

    async def sources(self, target: Target) -> list[RenderSource]:
        """The target's instances in WADO-01 order; :class:`NotFound` if it does not exist."""
        found = await locate_render_sources(self._db, target)
        if not found:
            raise await self._retrieve.absent(target)  # 404, or 410
        return found

    async def read(self, source: RenderSource) -> bytes:
        """The PS3.10 bytes of an instance (whole: decoding needs the header and the frame)."""
        if source.ref.size > self._max_source:
            raise NotAcceptable(
                f"the instance is larger ({source.ref.size} bytes) than the rendering limit"
            )
        payload = await self._retrieve.open(source.ref)
        chunks = [chunk async for chunk in payload.chunks]
        return b"".join(chunks)

    async def _run(self, func: Any, *args: Any, syntax: str | None = None) -> Any:
        """``func(*args)`` under the rendering limiter: in a decoder process when it decodes
        pixel data stored in ``syntax`` with a native codec (``func`` then is a module-level
        function), else in a thread."""
        try:
            isolate = syntax is not None and DecoderPool.needed(syntax)
            return await self._retrieve.decoders.run(
                func, *args, limiter=self._limiter, isolate=isolate
            )
        except RenderParameterError as exc:
            raise BadRequest(str(exc)) from exc
        except CannotAnonymize as exc:
            raise NotAcceptable(f"cannot anonymise this object: {exc}") from exc
        except (
            StorageError,
            BadRequest,
            NotAcceptable,
            NotFound,
            DecodedSizeTooLarge,
            DecoderFailed,
        ):
            raise
        except Exception as exc:  # a decoder failing on this object's pixel data
            raise NotAcceptable(
                "the pixel data of this object cannot be decoded for rendering "
                f"({type(exc).__name__})"
            ) from exc

    async def render(self, source: RenderSource, params: RenderParams) -> bytes:
        """One rendering of ``source`` (cached by content hash + normalised parameters)."""
        if kind(source) != ObjectKind.IMAGE:
            raise NotAcceptable(f"the instance has no pixel data, so no {params.media_type}")
        frames = source.number_of_frames or 1
        if frames < 1:  # indexed before ingest refused such counts
            raise NotAcceptable(
                f"the instance's NumberOfFrames ({frames}) is not a positive integer: it cannot "
                "be rendered"
            )
        beyond = [n for n in params.frames if n > frames]
        if beyond:
            raise NotFound(f"frame {beyond[0]} does not exist: the instance has {frames} frame(s)")
        key = f"{source.sha256}|{params.key()}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        self._check(source)
        limits = self._retrieve.decode_limits
        syntax = source.ref.transfer_syntax_uid
        ranged = None
        if len(params.frames) == 1 and frames > 1:
            ranged = await self._read_frame(source, params.frames[0])
        if ranged is not None:
            data: bytes = await self._run(
                _render_frame, *ranged, params, self.limits, limits, syntax=syntax
            )
        else:
            raw = await self.read(source)
            data = await self._run(
                rendering.render, raw, params, None, self.limits, limits, syntax=syntax
            )
        self._cache.put(key, data)
        return data

    def _check(self, source: RenderSource) -> None:
        """The decode limits from the index's values, before the blob is read (issue 19)."""
        ref = source.ref
        shape = index_shape(ref.rows, ref.columns, ref.bits_allocated, source.number_of_frames)
        if shape is None:
            return
        limits = self._retrieve.decode_limits
        limits.check_render(shape)
        if ref.transfer_syntax_uid in DEFLATED:
            limits.check_instance(shape)  # the whole data set is inflated to read a frame

    async def _read_frame(self, source: RenderSource, number: int) -> tuple[bytes, bytes] | None:
        """(header bytes, frame bytes) of one frame of a multi-frame instance, read as byte
        ranges (FRM index); None when the frame cannot be read that way (then the whole blob is).
        """
        ref = source.ref
        if ref.transfer_syntax_uid in DEFLATED:
            return None
        try:
            frame_set = await self._retrieve.frames(
                Target(ref.study_uid, ref.series_uid, ref.sop_uid, (number,))
            )
        except (NotAcceptable, NotFound):
            return None
        index = frame_set.index
        if (
            index is None
            or index.bit_offsets is not None
            or index.swap_bytes
            or not index.ranges[0]
        ):
            return None
        start = min(ranges[0][0] for ranges in index.ranges if ranges)
        header = await self._store.get_range(ref.blob_key, 0, start)
        frame = await self._retrieve.read_frame(frame_set, number)
        return header, frame

    async def text(self, source: RenderSource, media_type: str) -> bytes:
        """An SR as text/plain or text/html, an encapsulated PDF as application/pdf (REND-10)."""
        key = f"{source.sha256}|{media_type}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        raw = await self.read(source)

        def produce() -> bytes:
            ds = rendering.read_dataset(raw)
            if media_type == rendering.PDF:
                return rendering.encapsulated_pdf(ds)
            return rendering.render_text(ds, media_type)

        data: bytes = await self._run(produce)
        self._cache.put(key, data)
        return data

    def thumbnail_params(self, params: RenderParams, frame: int) -> RenderParams:
        """Thumbnail parameters: the representative frame, default 128 px box, no annotation."""
        viewport = params.viewport or rendering.Viewport(THUMBNAIL_SIZE, THUMBNAIL_SIZE)
        return replace(params, frames=(frame,), viewport=viewport, annotation=(), window=None)

    # --- WADO-URI application/dicom (URI-04) ---

    async def dicom(
        self, source: RenderSource, transfer_syntax: str | None, *, anonymized: bool
    ) -> bytes | None:
        """The instance for WADO-URI in ``transfer_syntax`` (None: the default, EVRLE).

        None means "send the stored bytes unchanged" (the caller streams them); otherwise the
        converted or anonymised PS3.10 bytes. :class:`NotAcceptable` when the syntax cannot be
        produced or the object cannot be anonymised.
        """
        stored = source.ref.transfer_syntax_uid
        target = transfer_syntax or str(ExplicitVRLittleEndian)
        if not anonymized and target == stored:
            return None
        if target != stored and target not in NATIVE_SYNTAXES:
            raise NotAcceptable(
                f"transfer syntax {target} cannot be produced from {stored} (no transcoder for it)"
            )
        limits = self._retrieve.decode_limits
        refusal = decode_refusal(source.ref, limits)
        try:
            if refusal is not None:
                raise DecodedSizeTooLarge(refusal)
            raw = await self.read(source)
            if anonymized:
                salt = self._salt
                return bytes(
                    await self._run(_anonymized, raw, salt, target, stored, limits, syntax=stored)
                )
            return bytes(await self._run(_to_transfer_syntax, raw, target, limits, syntax=stored))
        except DecodedSizeTooLarge as exc:  # the stored transfer syntax is the way out
            raise NotAcceptable(
                f"{exc.message}; it can be retrieved in its stored transfer syntax {stored}"
            ) from None


def _render_frame(
    header: bytes,
    frame: bytes,
    params: RenderParams,
    limits: OutputLimits,
    decode: DecodeLimits = DEFAULT_LIMITS,
) -> bytes:
    """Render one frame from its header and frame bytes (see :meth:`RenderService._read_frame`)."""
    ds = rendering.single_frame_dataset(header, frame, params.frames[0])
    return rendering.render(b"", replace(params, frames=(1,)), ds, limits, decode)


def _to_transfer_syntax(raw: bytes, target: str, limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    """``raw`` re-encoded in ``target`` (a native syntax): pixel data decoded if compressed.

    Explicit VR Little Endian goes through WADO-RS's transcoder (:mod:`app.dicom.transcode`,
    File Meta regenerated); only an explicitly requested Implicit VR Little Endian is written here.
    """
    if target == str(ExplicitVRLittleEndian):
        try:
            return transcode(raw, target, limits)
        except TranscodeError as exc:
            raise NotAcceptable(f"cannot convert to {target}: {exc}") from None
    ds = rendering.read_dataset(raw)
    return _write(ds, target, limits)


def _write(ds: Dataset, target: str, limits: DecodeLimits = DEFAULT_LIMITS) -> bytes:
    stored = UID(ds.file_meta.TransferSyntaxUID)
    if stored.is_compressed and "PixelData" in ds:
        check_decodable(ds, limits)
        ds.decompress()  # native pixels, Explicit VR Little Endian
    big_endian = not stored.is_compressed and not stored.is_little_endian
    if big_endian:
        # only the pixel data is swapped here: other OB/OW values would need it too
        words = [e.keyword for e in ds.iterall() if e.VR in ("OW", "OF", "OD", "OL", "OV")]
        if any(keyword != "PixelData" for keyword in words):
            raise NotAcceptable(
                "a big endian object with binary values other than its pixel data cannot be "
                "re-encoded yet"
            )
        if "PixelData" in ds:
            pixels = np.asarray(pixel_array(ds, raw=True))  # no colour conversion
            ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
            if int(ds.get("SamplesPerPixel", 1) or 1) > 1:
                ds.PlanarConfiguration = 0  # the array is colour-by-pixel
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    implicit = target == str(ImplicitVRLittleEndian)
    dcmwrite(
        out,
        ds,
        enforce_file_format=not big_endian,  # pydicom: not together with force_encoding
        implicit_vr=implicit,
        little_endian=True,
        force_encoding=big_endian,
    )
    return out.getvalue()


def _anonymized(
    raw: bytes, salt: bytes, target: str, stored: str, limits: DecodeLimits = DEFAULT_LIMITS
) -> bytes:
    ds = rendering.read_dataset(raw)
    if UID(stored).is_compressed and "PixelData" in ds:
        check_decodable(ds, limits)  # burned-in text is cleaned from decoded pixels
    ds, cleaned = anonymize(ds, salt, _decode_all)
    if cleaned:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian  # pixels are native now
    elif target == stored:
        out_syntax = UID(stored)
        if out_syntax.is_compressed or str(out_syntax) not in NATIVE_SYNTAXES:
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            return out.getvalue()
    return _write(ds, target, limits)
