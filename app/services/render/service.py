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

import secrets
from dataclasses import replace
from typing import Any

import anyio
from pydicom.uid import ExplicitVRLittleEndian

from app.dicom import render as rendering
from app.dicom.anonymize import CannotAnonymize
from app.dicom.render import ObjectKind, OutputLimits, RenderParameterError, RenderParams
from app.dicom.target import Target
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
from app.services.render.convert import (
    NATIVE_SYNTAXES,
    anonymize_instance,
    render_frame,
    to_transfer_syntax,
)
from app.services.render.renderings import (
    Rendering,
    RenderRequest,
    ThumbnailRequest,
    rendered,
    thumbnail,
)
from app.services.render.sources import kind
from app.services.retrieve import RetrieveService, decode_refusal, index_shape
from app.storage.base import ObjectStore, StorageError

__all__ = ["THUMBNAIL_SIZE", "RenderService"]

#: default thumbnail box (THUMB-02: longest edge 128 px)
THUMBNAIL_SIZE = 128


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

    async def rendered(self, request: RenderRequest) -> Rendering:
        """A study, series, instance or frames rendered (REND-01..10; see :mod:`.renderings`)."""
        return await rendered(self, request)

    async def thumbnail(self, request: ThumbnailRequest) -> Rendering:
        """A thumbnail of a study, series, instance or frame (THUMB-01/02)."""
        return await thumbnail(self, request)

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
                render_frame, *ranged, params, self.limits, limits, syntax=syntax
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
            frame_set = await self._retrieve.frame_reader.frames(
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
        frame = await self._retrieve.frame_reader.read_frame(frame_set, number)
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
                    await self._run(
                        anonymize_instance, raw, salt, target, stored, limits, syntax=stored
                    )
                )
            return bytes(await self._run(to_transfer_syntax, raw, target, limits, syntax=stored))
        except DecodedSizeTooLarge as exc:  # the stored transfer syntax is the way out
            raise NotAcceptable(
                f"{exc.message}; it can be retrieved in its stored transfer syntax {stored}"
            ) from None
