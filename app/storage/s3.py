"""Object stores through obstore (DESIGN.md §4): S3 (AWS S3, MinIO, Ceph RGW, R2, ...), and
through :mod:`app.storage.cloud` Google Cloud Storage and Azure Blob Storage.

:class:`ObstoreStore` is the adapter for any obstore store; :class:`S3Store` builds one on an S3
bucket, with server-side encryption when configured (SSE-S3, SSE-KMS with a key id, DSSE-KMS:
obstore sends ``x-amz-server-side-encryption`` and the key id on every PUT, multipart uploads
included).

Every object is one PUT from the point of view of readers: obstore uploads files larger than
its part size (5 MiB) as a multipart upload, which S3 makes visible atomically on completion.
Reads are ranged GETs streamed in bounded chunks; nothing reads a whole object into memory
except ``get_range``, which is for small pieces (headers, frames), and a read whose range fits
in one chunk, which is collected in one call.

obstore signals a missing object with the builtin ``FileNotFoundError``; every other failure is
an ``obstore.exceptions.BaseError``. Both are translated to this package's error tree.
"""

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import anyio
import obstore
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store as _S3

from app.storage.base import ObjectInfo, ObjectStoreBase, StorageError, check_prefix

if TYPE_CHECKING:
    from obstore import ObjectMeta
    from obstore.store import ClientConfig, S3Config
    from obstore.store import ObjectStore as ObjectStoreType

#: ``x-amz-server-side-encryption`` values obstore sends (SSE-C needs a key on every request
#: and is not offered)
SERVER_SIDE_ENCRYPTION = ("AES256", "aws:kms", "aws:kms:dsse")

# obstore's own default part size; files above it go up as multipart uploads.
_PART_SIZE = 5 * 1024 * 1024


async def _rechunk(stream: AsyncIterator[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    """Re-cut a byte stream into chunks of exactly ``chunk_size`` (the last may be shorter)."""
    buf = bytearray()
    async for piece in stream:
        if not buf and len(piece) == chunk_size:
            yield piece
            continue
        buf += piece
        while len(buf) >= chunk_size:
            yield bytes(buf[:chunk_size])
            del buf[:chunk_size]
    if buf:
        yield bytes(buf)


class ObstoreStore(ObjectStoreBase):
    """:class:`~app.storage.base.ObjectStore` on any obstore store (S3, GCS, Azure); keys live
    under ``prefix/`` of the bucket (container)."""

    kind: ClassVar[str] = "s3"
    _failures: ClassVar[tuple[type[Exception], ...]] = (ObstoreError, OSError)

    def __init__(self, store: "ObjectStoreType", *, bucket: str, prefix: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._store = store

    def __repr__(self) -> str:
        return f"{type(self).__name__}(bucket={self.bucket!r}, prefix={self.prefix!r})"

    # --- writing -------------------------------------------------------------------------------

    async def _put_bytes(self, key: str, data: bytes) -> None:
        """One PUT (multipart above 5 MiB); visible atomically once it returns."""
        await obstore.put_async(self._store, key, data)

    async def _put_file(self, key: str, source: Path, move: bool) -> None:
        """Stream the file up (multipart above 5 MiB); with ``move=True`` remove it after."""
        await obstore.put_async(self._store, key, source, chunk_size=_PART_SIZE)
        if move:
            await anyio.Path(source).unlink(missing_ok=True)

    # --- reading -------------------------------------------------------------------------------

    async def _empty_range(self, key: str, start: int, error: Exception | None) -> None:
        """A range GET failed or was empty: fine if the object exists and ends before ``start``.

        S3 answers 416 for a range starting at or after the end; we clamp like a slice instead.
        The HEAD costs a round trip only on this rare path.
        """
        with self._errors(key):
            meta = await obstore.head_async(self._store, key)
        if start < meta["size"] and error is not None:
            raise StorageError(f"{key}: {error}") from error

    async def _stream(
        self, key: str, start: int, end: int | None, chunk_size: int
    ) -> AsyncIterator[bytes]:
        """One ranged GET, clamped to the object's end."""
        if end == start:
            await self._empty_range(key, start, None)
            return
        options: obstore.GetOptions = {
            "range": {"offset": start} if end is None else (start, end),
        }
        with self._errors(key):
            try:
                result = await obstore.get_async(self._store, key, options=options)
            except ObstoreError as exc:
                await self._empty_range(key, start, exc)
                return
        first, stop = result.range
        if stop - first <= chunk_size:
            # one chunk in all (most instances): collected in one call, no re-chunking copies
            with self._errors(key):
                data = (await result.bytes_async()).to_bytes()
            if data:
                yield data
            return
        with self._errors(key):
            # min_chunk_size makes obstore coalesce network reads; _rechunk caps them.
            async for chunk in _rechunk(result.stream(min_chunk_size=chunk_size), chunk_size):
                yield chunk

    async def _get_range(self, key: str, start: int, length: int) -> bytes:
        """One ranged GET."""
        if length == 0:
            await self._empty_range(key, start, None)
            return b""
        try:
            data = await obstore.get_range_async(self._store, key, start=start, length=length)
        except ObstoreError as exc:
            await self._empty_range(key, start, exc)
            return b""
        return data.to_bytes()

    async def _stat(self, key: str) -> ObjectInfo:
        """One HEAD request."""
        return _info(await obstore.head_async(self._store, key))

    async def _delete(self, key: str) -> None:
        """One DELETE; S3 does not mind a missing key."""
        await obstore.delete_async(self._store, key)

    # --- listing and health --------------------------------------------------------------------

    async def list(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (paged LIST requests)."""
        check_prefix(prefix)
        # obstore matches prefixes by whole path segments; list the enclosing "directory" and
        # filter, so that "dicom/ab" finds "dicom/abc/..." as a plain string prefix would.
        base = prefix.rpartition("/")[0] or None
        with self._errors(f"listing {prefix or '/'}", "list"):
            async for page in obstore.list(self._store, base, chunk_size=1000):
                for meta in page:
                    if meta["path"].startswith(prefix):
                        yield _info(meta)

    async def check(self) -> None:
        """One LIST request for at most one key: the bucket exists and our credentials work."""
        with self._errors(f"bucket {self.bucket}", "check"):
            stream = obstore.list(self._store, None, chunk_size=1)
            with contextlib.suppress(StopAsyncIteration):
                await anext(stream)

    async def close(self) -> None:
        """obstore pools connections inside the store object; dropping it releases them."""


class S3Store(ObstoreStore):
    """An S3 bucket (or a prefix of one); unset values fall back to the usual ``AWS_*``
    environment variables and instance roles."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        allow_http: bool = False,
        server_side_encryption: str | None = None,
        sse_kms_key_id: str | None = None,
        sse_bucket_key_enabled: bool | None = None,
    ) -> None:
        config: S3Config = {}
        if endpoint:
            config["endpoint"] = endpoint
        if region:
            config["region"] = region
        if access_key_id:
            config["access_key_id"] = access_key_id
        if secret_access_key:
            config["secret_access_key"] = secret_access_key
        if server_side_encryption:
            if server_side_encryption not in SERVER_SIDE_ENCRYPTION:
                raise ValueError(
                    f"unknown S3 server-side encryption {server_side_encryption!r}"
                    f" (one of {', '.join(SERVER_SIDE_ENCRYPTION)})"
                )
            config["server_side_encryption"] = server_side_encryption
        if sse_kms_key_id:
            if not (server_side_encryption or "").startswith("aws:kms"):
                raise ValueError("an SSE-KMS key id needs server-side encryption aws:kms")
            config["sse_kms_key_id"] = sse_kms_key_id
        if sse_bucket_key_enabled is not None:
            config["sse_bucket_key_enabled"] = sse_bucket_key_enabled
        client: ClientConfig = {"allow_http": allow_http}
        prefix = prefix.strip("/")
        super().__init__(
            _S3(bucket, prefix=prefix or None, config=config, client_options=client),
            bucket=bucket,
            prefix=prefix,
        )


def _info(meta: "ObjectMeta") -> ObjectInfo:
    return ObjectInfo(key=meta["path"], size=meta["size"], modified=meta["last_modified"])
