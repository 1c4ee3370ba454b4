"""STOW-RS into a real S3 endpoint (moto's server on 127.0.0.1), not a patched client."""

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio

from app.config import S3Settings
from app.main import create_app
from app.services.container import Services, open_services
from tests.conftest import make_settings, truncate
from tests.factories import make_instance, multipart, stow_headers
from tests.s3server import S3Server


@pytest_asyncio.fixture
async def s3_services(
    database_url: str, tmp_path: Path, s3_server: S3Server
) -> AsyncIterator[tuple[Services, httpx.AsyncClient]]:
    bucket = s3_server.create_bucket()
    settings = make_settings(
        database_url,
        tmp_path,
        storage_url=f"s3://{bucket}/archive",
        s3=S3Settings(
            endpoint=s3_server.endpoint,
            region=s3_server.region,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
            allow_http=True,
        ),
    )
    async with open_services(settings) as services:
        await truncate(services.db)
        app = create_app(settings, services=services)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            yield services, client


async def test_stow_into_s3(s3_services: tuple[Services, httpx.AsyncClient]) -> None:
    services, client = s3_services
    small = make_instance()
    large = make_instance(rows=1024, columns=1024)  # 2 MB: spooled through a temp file
    response = await client.post(
        "/dicom-web/studies", content=multipart([small, large]), headers=stow_headers()
    )
    assert response.status_code == 200, response.text
    objects = [o async for o in services.store.list("dicom/")]
    assert len(objects) == 2
    stored = {
        hashlib.sha256(b"".join([c async for c in services.store.open(o.key)])).hexdigest()
        for o in objects
    }
    assert stored == {hashlib.sha256(small).hexdigest(), hashlib.sha256(large).hexdigest()}
    report = await services.maintenance.fsck()
    assert report.ok
    assert await services.store.get_range(objects[0].key, 128, 4) == b"DICM"
