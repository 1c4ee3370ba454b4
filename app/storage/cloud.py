"""Google Cloud Storage and Azure Blob Storage, through obstore (DESIGN.md §2: "GCS/Azure via
obstore").

The storage URL is parsed by obstore itself, so every form it knows is accepted:

- GCS: ``gs://bucket/prefix``;
- Azure: ``az://container/prefix``, ``azure://``, ``adl://`` (the account from the settings or
  ``AZURE_STORAGE_ACCOUNT_NAME``), ``abfs[s]://container@account.dfs.core.windows.net/prefix``,
  ``https://account.blob.core.windows.net/container/prefix`` (and ``.dfs.``).

Credentials not given in the settings come from obstore's usual environment variables
(``GOOGLE_SERVICE_ACCOUNT``, ``GOOGLE_APPLICATION_CREDENTIALS``, ``AZURE_STORAGE_*``) and the
platform's metadata services. At-rest encryption is the provider's (both encrypt every object);
customer-managed keys are set on the bucket (GCS CMEK) or the account (Azure), not per request.
"""

from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from obstore.exceptions import BaseError as ObstoreError
from obstore.store import AzureStore as _Azure
from obstore.store import GCSStore as _Gcs

from app.storage.s3 import ObstoreStore

__all__ = ["AZURE_SCHEMES", "GCS_SCHEMES", "AzureStore", "GcsStore", "is_azure_https"]

GCS_SCHEMES: Final = frozenset({"gs"})
AZURE_SCHEMES: Final = frozenset({"az", "azure", "adl", "abfs", "abfss"})
#: the https hosts obstore reads as Azure URLs
_AZURE_HOSTS: Final = (
    ".blob.core.windows.net",
    ".dfs.core.windows.net",
    ".blob.fabric.microsoft.com",
    ".dfs.fabric.microsoft.com",
)


def is_azure_https(url: str) -> bool:
    """Whether an ``https://`` URL names an Azure storage account.

    >>> is_azure_https("https://acct.blob.core.windows.net/images")
    True
    >>> is_azure_https("https://example.org/blob.core.windows.net")
    False
    """
    parts = urlsplit(url)
    return parts.scheme == "https" and (parts.hostname or "").endswith(_AZURE_HOSTS)


def _config(values: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (values or {}).items() if v is not None and v != ""}


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"storage URL {url!r}: put the store's options in settings, not the URL")


class GcsStore(ObstoreStore):
    """A Google Cloud Storage bucket (or a prefix of one)."""

    def __init__(self, url: str, *, config: Mapping[str, Any] | None = None) -> None:
        _check_url(url)
        try:
            store = _Gcs.from_url(url, config=_config(config))  # type: ignore[arg-type]
        except (ObstoreError, ValueError) as exc:
            raise ValueError(f"storage URL {url!r}: {_first_line(exc)}") from exc
        bucket = urlsplit(url).netloc
        if not bucket:
            raise ValueError(f"storage URL {url!r} names no bucket: use gs://bucket/prefix")
        super().__init__(store, bucket=bucket, prefix=store.prefix or "")


class AzureStore(ObstoreStore):
    """An Azure Blob Storage container (or a prefix of one)."""

    def __init__(self, url: str, *, config: Mapping[str, Any] | None = None) -> None:
        _check_url(url)
        try:
            store = _Azure.from_url(url, config=_config(config))  # type: ignore[arg-type]
        except (ObstoreError, ValueError) as exc:
            raise ValueError(f"storage URL {url!r}: {_first_line(exc)}") from exc
        container = store.config.get("container_name")
        if not container:
            raise ValueError(
                f"storage URL {url!r} names no container: use az://container/prefix or "
                "https://account.blob.core.windows.net/container/prefix"
            )
        super().__init__(store, bucket=str(container), prefix=store.prefix or "")


def _first_line(exc: BaseException) -> str:
    """obstore's messages carry a multi-line debug dump after the first line."""
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
