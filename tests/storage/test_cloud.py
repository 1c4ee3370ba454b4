"""GCS and Azure storage URLs, parsed the way obstore reads them (no cloud is contacted)."""

import pytest

from app.config import Settings
from app.services.ingest_stack import build_store
from app.storage.cloud import AzureStore, GcsStore
from app.storage.factory import open_store


@pytest.mark.parametrize(
    ("url", "bucket", "prefix"),
    [
        ("gs://images", "images", ""),
        ("gs://images/", "images", ""),
        ("gs://images/hospital/pacs/", "images", "hospital/pacs"),
    ],
)
def test_gcs_urls(url: str, bucket: str, prefix: str) -> None:
    store = open_store(url)
    assert isinstance(store, GcsStore)
    assert (store.bucket, store.prefix) == (bucket, prefix)


@pytest.mark.parametrize(
    ("url", "container", "prefix"),
    [
        ("az://images/pacs", "images", "pacs"),
        ("azure://images/a/b", "images", "a/b"),
        ("adl://images", "images", ""),
        ("abfs://images/pacs", "images", "pacs"),
        ("abfss://images@acct.dfs.core.windows.net/pacs/x", "images", "pacs/x"),
        ("https://acct.blob.core.windows.net/images/pacs", "images", "pacs"),
    ],
)
def test_azure_urls(url: str, container: str, prefix: str) -> None:
    store = open_store(url, azure_config={"account_name": "acct"})
    assert isinstance(store, AzureStore)
    assert (store.bucket, store.prefix) == (container, prefix)
    assert repr(store) == f"AzureStore(bucket={container!r}, prefix={prefix!r})"


def test_settings_reach_the_cloud_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AZURE_STORAGE_ACCOUNT_NAME", "AZURE_STORAGE_ACCOUNT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", "az://scans/lightbox")
    monkeypatch.setenv("LIGHTBOX_AZURE__ACCOUNT_NAME", "hospitalpacs")
    store = build_store(Settings())
    assert isinstance(store, AzureStore)
    config: dict[str, object] = dict(store._store.config)  # type: ignore[union-attr]
    assert config["account_name"] == "hospitalpacs"
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", "gs://scans")
    monkeypatch.setenv("LIGHTBOX_GCS__SERVICE_ACCOUNT_PATH", "/nonexistent/key.json")
    # the key file is read as the store is built: a wrong path is said at once
    with pytest.raises(ValueError, match=r"storage URL 'gs://scans': .*service account file"):
        build_store(Settings())


@pytest.mark.parametrize(
    ("url", "config", "message"),
    [
        ("az://images/pacs", {}, "Account must be specified"),
        ("gs://", {}, "names no bucket|gs://"),
        ("gs://images?x=1", {}, "put the store's options in settings"),
        ("https://example.org/images", {}, "unsupported storage URL"),
        ("https://acct.blob.core.windows.net", {}, "Container name must be specified"),
    ],
)
def test_bad_cloud_urls(
    url: str, config: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AZURE_STORAGE_ACCOUNT_NAME", raising=False)
    with pytest.raises(ValueError, match=message):
        open_store(url, azure_config=config)
