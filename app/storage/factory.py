"""Build an object store from a storage URL (DESIGN.md §4).

``file:///abs/path``, ``file:relative/path`` or a bare path: :class:`FilesystemStore`;
``s3://bucket/prefix``: :class:`S3Store`; ``gs://bucket/prefix``: :class:`GcsStore`;
``az://container/prefix`` (and the other Azure forms obstore reads, :mod:`app.storage.cloud`):
:class:`AzureStore`; ``memory://``: :class:`MemoryStore`.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from app.storage.base import ObjectStore
from app.storage.cloud import AZURE_SCHEMES, GCS_SCHEMES, AzureStore, GcsStore, is_azure_https
from app.storage.filesystem import FilesystemStore
from app.storage.memory import MemoryStore
from app.storage.s3 import S3Store

# A URL scheme (RFC 3986 §3.1) of two or more characters, so "C:\data" stays a path.
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]+):")


def open_store(
    url: str,
    *,
    s3_endpoint: str | None = None,
    s3_region: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_allow_http: bool = False,
    s3_server_side_encryption: str | None = None,
    s3_sse_kms_key_id: str | None = None,
    s3_sse_bucket_key_enabled: bool | None = None,
    gcs_config: Mapping[str, Any] | None = None,
    azure_config: Mapping[str, Any] | None = None,
) -> ObjectStore:
    """The object store that ``url`` names; a filesystem root is created if missing.

    >>> type(open_store("memory://")).__name__
    'MemoryStore'
    >>> open_store("s3://bucket/some/prefix", s3_region="us-east-1")
    S3Store(bucket='bucket', prefix='some/prefix')
    >>> open_store("gs://images/lightbox")
    GcsStore(bucket='images', prefix='lightbox')
    >>> open_store("az://images/lightbox", azure_config={"account_name": "pacs"})
    AzureStore(bucket='images', prefix='lightbox')
    >>> open_store("ftp://host/x")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: unsupported storage URL 'ftp://host/x': ...
    """
    if not url.strip():
        raise ValueError("empty storage URL")
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme == "":
        return FilesystemStore(Path(url).expanduser())
    if scheme == "file":
        return FilesystemStore(_file_path(url))
    if scheme == "memory":
        if url.lower().rstrip("/") != "memory:":
            raise ValueError(f"memory:// takes no path: {url!r}")
        return MemoryStore()
    if scheme == "s3":
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"storage URL {url!r} names no bucket: use s3://bucket/prefix")
        if parts.query or parts.fragment:
            raise ValueError(f"storage URL {url!r}: put S3 options in settings, not the URL")
        return S3Store(
            parts.netloc,
            prefix=unquote(parts.path).strip("/"),
            endpoint=s3_endpoint,
            region=s3_region,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
            allow_http=s3_allow_http,
            server_side_encryption=s3_server_side_encryption,
            sse_kms_key_id=s3_sse_kms_key_id,
            sse_bucket_key_enabled=s3_sse_bucket_key_enabled,
        )
    if scheme in GCS_SCHEMES:
        return GcsStore(url, config=gcs_config)
    if scheme in AZURE_SCHEMES or is_azure_https(url):
        return AzureStore(url, config=azure_config)
    raise ValueError(
        f"unsupported storage URL {url!r}: use file:///path, a plain path, s3://bucket/prefix, "
        "gs://bucket/prefix, az://container/prefix (or another Azure URL) or memory://"
    )


def _file_path(url: str) -> Path:
    """``file:///abs`` or ``file://localhost/abs`` -> ``/abs``; ``file:rel`` -> ``rel``."""
    rest = url[len("file:") :]
    if rest.startswith("//"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URL {url!r} names a remote host")
        path = unquote(parts.path)
    else:
        path = unquote(rest)
    if not path:
        raise ValueError(f"file URL {url!r} names no directory")
    return Path(path).expanduser()
