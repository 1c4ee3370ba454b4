"""S3 server-side encryption (SSE-S3, SSE-KMS with a key id, DSSE-KMS) requested on every PUT,
multipart uploads included, from the settings down (moto's S3 server records what was asked)."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import S3Encryption, S3Settings, Settings
from app.services.ingest_stack import build_store
from app.storage.s3 import S3Store
from tests.s3server import S3Server

KEY = "dicom/aa/bb/cc.0123.dcm"
KMS_KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def _store(server: S3Server, bucket: str, **sse: object) -> S3Store:
    return S3Store(
        bucket,
        prefix="lightbox",
        endpoint=server.endpoint,
        region=server.region,
        access_key_id=server.access_key_id,
        secret_access_key=server.secret_access_key,
        allow_http=True,
        **sse,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("sse", "expected", "key_id"),
    [
        ({"server_side_encryption": "AES256"}, "AES256", None),
        ({"server_side_encryption": "aws:kms", "sse_kms_key_id": KMS_KEY}, "aws:kms", KMS_KEY),
        ({"server_side_encryption": "aws:kms:dsse"}, "aws:kms:dsse", None),
        ({}, None, None),
    ],
)
async def test_every_put_asks_for_the_encryption(
    s3_server: S3Server,
    s3_bucket: str,
    tmp_path: Path,
    sse: dict[str, object],
    expected: str | None,
    key_id: str | None,
) -> None:
    store = _store(s3_server, s3_bucket, **sse)
    await store.put_bytes(KEY, b"small object")
    big = tmp_path / "big.dcm"
    big.write_bytes(b"\x01" * (6 * 1024 * 1024))  # above the part size: a multipart upload
    await store.put_file("dicom/big.dcm", big)
    for key in (KEY, "dicom/big.dcm"):
        head = s3_server.client.head_object(Bucket=s3_bucket, Key=f"lightbox/{key}")
        assert head.get("ServerSideEncryption") == expected, key
        assert head.get("SSEKMSKeyId") == key_id, key
    assert await store.get_range(KEY, 0, 5) == b"small"  # and reads are unchanged


async def test_settings_reach_the_store(
    s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``LIGHTBOX_S3__SERVER_SIDE_ENCRYPTION`` / ``__SSE_KMS_KEY_ID`` as an operator sets them."""
    monkeypatch.setenv("LIGHTBOX_STORAGE_URL", f"s3://{s3_bucket}/pacs")
    monkeypatch.setenv("LIGHTBOX_S3__ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("LIGHTBOX_S3__ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("LIGHTBOX_S3__SECRET_ACCESS_KEY", s3_server.secret_access_key)
    monkeypatch.setenv("LIGHTBOX_S3__ALLOW_HTTP", "true")
    monkeypatch.setenv("LIGHTBOX_S3__SERVER_SIDE_ENCRYPTION", "aws:kms")
    monkeypatch.setenv("LIGHTBOX_S3__SSE_KMS_KEY_ID", KMS_KEY)
    settings = Settings(data_dir=tmp_path)
    assert settings.s3.server_side_encryption is S3Encryption.KMS
    store = build_store(settings)
    try:
        await store.put_bytes(KEY, b"x")
    finally:
        await store.close()
    head = s3_server.client.head_object(Bucket=s3_bucket, Key=f"pacs/{KEY}")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", KMS_KEY)


def test_bad_encryption_settings_are_refused() -> None:
    with pytest.raises(ValidationError, match="Input should be 'AES256', 'aws:kms' or"):
        S3Settings(server_side_encryption="aes")
    with pytest.raises(ValidationError, match="sse_kms_key_id needs server_side_encryption"):
        S3Settings(server_side_encryption=S3Encryption.AES256, sse_kms_key_id="k")
    with pytest.raises(ValueError, match="unknown S3 server-side encryption 'sse-c'"):
        S3Store("bucket", server_side_encryption="sse-c")
    with pytest.raises(ValueError, match="an SSE-KMS key id needs server-side encryption"):
        S3Store("bucket", sse_kms_key_id="k")
