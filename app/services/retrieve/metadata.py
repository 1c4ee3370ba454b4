"""Retrieve metadata (PS3.18 §10.4.1.1.2; RES-04, META-01..05).

The stored DICOM JSON of the target's instances, spliced into one array in WADO-01 order with
the service base URL put in front of each BulkDataURI: no parsing, no re-encoding. Documents are
cached per process by entity tag (a hash of the instances' content hashes and the base URL, so an
entry is never stale), plain and gzipped (GEN-08): a repeated series ``/metadata`` is one small
index query, and a caller whose copy is current (``If-None-Match``) gets no body.
"""

import gzip
import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import anyio.to_thread

from app.dicom.target import Target
from app.index.retrieval import MetadataRow, locate_hashes, locate_metadata
from app.services.cache import ByteCache
from app.services.retrieve.context import RetrieveContext

__all__ = [
    "MetadataDocument",
    "MetadataRequest",
    "MetadataRetrieval",
    "gzip_etag",
    "metadata_document",
    "metadata_etag",
]

_BULK_DATA_URI = b'"BulkDataURI":"'


@dataclass(frozen=True, slots=True)
class MetadataRequest:
    """Retrieve the metadata of a study, series or instance.

    ``base`` is the service's base URL (BulkDataURIs are absolute, META-04); ``gzipped`` asks
    for the gzip body; ``current`` holds the entity tags of the copies the caller has (``*``:
    any), with which the document is not sent again.
    """

    target: Target
    base: str
    gzipped: bool = False
    current: Collection[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class MetadataDocument:
    """A metadata body and its entity tag (strong; a gzip body has its own tag); no body when
    the caller's copy is current."""

    etag: str
    body: bytes | None


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


class MetadataRetrieval:
    """The metadata use case over a :class:`~.context.RetrieveContext`, with its cache."""

    def __init__(self, context: RetrieveContext, *, cache_bytes: int) -> None:
        self._context = context
        self._cache = ByteCache(cache_bytes)

    async def rows(self, target: Target) -> list[MetadataRow]:
        """The target's stored metadata in WADO-01 order; :class:`NotFound` if it does not exist."""
        rows = await locate_metadata(self._context.db, target)
        if not rows:
            raise await self._context.absent(target)
        return rows

    async def retrieve(self, request: MetadataRequest) -> MetadataDocument:
        """The target's metadata array, or only its tag when the caller's copy is current.

        The tag comes first (one small query: :class:`NotFound` for an unknown target); a
        document cached under it is answered without reading the stored JSON. The plain and the
        gzip body are the same content: a copy of either is current (weak comparison, RFC 9110
        §13.1.2).
        """
        hashes = await locate_hashes(self._context.db, request.target)
        if not hashes:
            raise await self._context.absent(request.target)
        etag = _etag(hashes, request.base)
        gzipped = request.gzipped
        if "*" in request.current or etag in request.current or gzip_etag(etag) in request.current:
            return MetadataDocument(_variant(etag, gzipped), None)
        cached = self._cache.get((etag, gzipped))
        if cached is not None:
            return MetadataDocument(_variant(etag, gzipped), cached)
        rows = await self.rows(request.target)
        tag = metadata_etag(rows, request.base)  # the rows read now, should they have changed
        plain = self._cache.get((tag, False))
        if plain is None:
            plain = metadata_document(rows, request.base)
            self._cache.put((tag, False), plain)
        del rows
        if not gzipped:
            return MetadataDocument(tag, plain)
        body = await anyio.to_thread.run_sync(lambda: gzip.compress(plain, compresslevel=6))
        self._cache.put((tag, True), body)
        return MetadataDocument(_variant(tag, True), body)
