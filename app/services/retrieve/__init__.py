"""WADO-RS retrieve (PS3.18 §10.4): instances, metadata, frames and pixel data, bulk data.

Each use case is one call of :class:`RetrieveService` that takes a typed request (the
:class:`~app.dicom.target.Target` and what the caller accepts, :mod:`.requests`) and returns
what the front end writes: an :class:`~.requests.Answer` of parts with their media types, or a
metadata document. Every refusal (400, 404/410, 406) happens before it returns, and the first
part is read or opened, so the status is known before the first byte (STYLE.md C5); the rest is
read while it is written, never holding a database connection.

The package, by concept:

* :mod:`.requests` the typed requests and answers; :mod:`.choice` the representation chosen
  from what the caller accepts (Accept, presentation contexts);
* :mod:`.plan` the transfer syntax of each instance; :mod:`.context` the blobs (PS3.10 prefix,
  size checks) and transcoding;
* :mod:`.instances`, :mod:`.metadata`, :mod:`.pixels` (over :mod:`.framesets`), :mod:`.bulk`,
  :mod:`.archive` (studies and series as PS3.10 file-sets: ZIP, directory): the use cases.
"""

from app.dicom.decoding import DEFAULT_LIMITS, DecodeLimits
from app.dicom.target import Target
from app.errors import Gone, NotFound
from app.index.db import Database
from app.index.retrieval import InstanceRef, MetadataRow
from app.services.decoders import DecoderPool
from app.services.retrieve.archive import ZIP, Archive, ArchiveRetrieval, MediaFile, MediaPlan
from app.services.retrieve.bulk import BulkRetrieval
from app.services.retrieve.choice import FRAME_MEDIA_TYPES, OCTET_STREAM, FrameRepresentation
from app.services.retrieve.context import PS310_PREFIX, Payload, RetrieveContext
from app.services.retrieve.framesets import FrameReader, FrameSet
from app.services.retrieve.instances import InstanceRetrieval
from app.services.retrieve.metadata import (
    MetadataDocument,
    MetadataRequest,
    MetadataRetrieval,
    gzip_etag,
)
from app.services.retrieve.pixels import PixelRetrieval
from app.services.retrieve.plan import (
    Planned,
    Selection,
    decode_refusal,
    index_shape,
    producible,
    select,
    stored_length,
)
from app.services.retrieve.requests import (
    Acceptable,
    Accepted,
    Answer,
    BulkRequest,
    InstancesRequest,
    Part,
    PartHead,
    PixelsRequest,
)
from app.storage.base import ObjectStore

__all__ = [
    "FRAME_MEDIA_TYPES",
    "OCTET_STREAM",
    "PS310_PREFIX",
    "ZIP",
    "Acceptable",
    "Accepted",
    "Answer",
    "Archive",
    "ArchiveRetrieval",
    "BulkRequest",
    "FrameRepresentation",
    "FrameSet",
    "InstanceRef",
    "InstancesRequest",
    "MediaFile",
    "MediaPlan",
    "MetadataDocument",
    "MetadataRequest",
    "MetadataRow",
    "Part",
    "PartHead",
    "Payload",
    "PixelsRequest",
    "Planned",
    "RetrieveService",
    "Selection",
    "decode_refusal",
    "gzip_etag",
    "index_shape",
    "producible",
    "select",
    "stored_length",
]


class RetrieveService:
    """The retrieve use cases (module docstring), for WADO-RS, WADO-URI, rendering and DIMSE."""

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
        #: the index, the blobs and the decoders every use case reads
        self.context = RetrieveContext(
            db,
            store,
            chunk_size=chunk_size,
            decode_limits=decode_limits,
            decoders=decoders or DecoderPool(0),
            transcode_concurrency=transcode_concurrency,
        )
        self._instances = InstanceRetrieval(self.context)
        self._metadata = MetadataRetrieval(self.context, cache_bytes=metadata_cache_bytes)
        #: frames of the index as byte ranges of the blobs (rendering reads them too)
        self.frame_reader = FrameReader(self.context)
        self._pixels = PixelRetrieval(self.frame_reader)
        self._bulk = BulkRetrieval(self.context)
        #: studies and series as PS3.10 file-sets (ZIP, directory; ``lightbox export``)
        self.archives = ArchiveRetrieval(self.context)

    @property
    def decode_limits(self) -> DecodeLimits:
        return self.context.decode_limits

    @property
    def decoders(self) -> DecoderPool:
        return self.context.decoders

    # --- the use cases ---

    async def instances(self, request: InstancesRequest) -> Answer:
        """The target's instances as PS3.10 files (RES-03, WADO-01..03, NEG-02..11)."""
        return await self._instances.retrieve(request)

    async def metadata(self, request: MetadataRequest) -> MetadataDocument:
        """The target's metadata (RES-04, META-01..05)."""
        return await self._metadata.retrieve(request)

    async def pixels(self, request: PixelsRequest) -> Answer:
        """Frames of an instance, or the pixel data of a study, series or instance (RES-08)."""
        return await self._pixels.retrieve(request)

    async def bulk(self, request: BulkRequest) -> Answer:
        """A bulk data value, or every value of a study, series or instance (BULK-01..03)."""
        return await self._bulk.retrieve(request)

    async def archive(self, target: Target) -> Archive:
        """A study or series as a ZIP archive with a DICOMDIR (PS3.18 §8.6.1.3): 404/410 and a
        missing first blob are raised before this returns."""
        plan = await self.archives.plan([target])
        name = target.series_uid or target.study_uid
        return await self.archives.archive(plan, f"{name}.zip")

    # --- the steps other use cases share (rendering, WADO-URI) ---

    async def resolve(self, target: Target) -> list[InstanceRef]:
        """The target's instances in WADO-01 order; :class:`NotFound` if it does not exist."""
        return await self._instances.resolve(target)

    async def absent(self, target: Target) -> NotFound | Gone:
        """The error for a target not in the index: 404, or 410 while a tombstone lives."""
        return await self.context.absent(target)

    async def open(self, ref: InstanceRef, transfer_syntax: str | None = None) -> Payload:
        """``ref`` as a PS3.10 file: its length, then its bytes (:meth:`RetrieveContext.open`)."""
        return await self.context.open(ref, transfer_syntax)
