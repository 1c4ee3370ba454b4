"""dicomweb-client's ``store_instances`` against a real server process (TEST-02)."""

import asyncio
from pathlib import Path

from pydicom.uid import generate_uid
from sqlalchemy import func, select

from app.index.models import Instance
from app.services.container import open_services
from tests.conftest import make_settings
from tests.e2e.server import DicomwebServer
from tests.factories import make_dataset


async def _instances(database_url: str, data_dir: Path) -> int:
    async with (
        open_services(make_settings(database_url, data_dir)) as services,
        services.db.read() as conn,
    ):
        return (await conn.execute(select(func.count()).select_from(Instance))).scalar_one()


def test_store_instances_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    client = dicomweb_server.client
    study = generate_uid()
    datasets = [make_dataset(StudyInstanceUID=study, InstanceNumber=i) for i in range(5)]
    result = client.store_instances(datasets)
    referenced = result.ReferencedSOPSequence
    assert {item.ReferencedSOPInstanceUID for item in referenced} == {
        ds.SOPInstanceUID for ds in datasets
    }
    assert result.RetrieveURL == f"{dicomweb_server.dicomweb}/studies/{study}"
    assert "FailedSOPSequence" not in result

    # into the study resource, and an identical retry is still a success (STOW-09)
    again = client.store_instances(datasets[:2], study_instance_uid=study)
    assert len(again.ReferencedSOPSequence) == 2

    dicomweb_server.server.stop()
    stored = _instances(dicomweb_server.database_url, dicomweb_server.data_dir)
    assert asyncio.run(stored) == 5
