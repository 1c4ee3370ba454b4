"""dicomweb-client's ``store_instances`` against a real server process (TEST-02)."""

import asyncio
from pathlib import Path

from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from app.index.models import Instance
from app.services.container import open_services
from tests.conftest import make_settings
from tests.e2e.server import free_port, running_server, server_env
from tests.factories import make_dataset


async def _instances(database_url: str, data_dir: Path) -> int:
    async with (
        open_services(make_settings(database_url, data_dir)) as services,
        services.db.read() as conn,
    ):
        return (await conn.execute(select(func.count()).select_from(Instance))).scalar_one()


def test_store_instances_with_dicomweb_client(fresh_database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()
    # dicomweb-client sends "Host: 127.0.0.1" without the port, so say where we are reached
    env = server_env(
        data_dir,
        fresh_database_url,
        LIGHTBOX_PUBLIC_BASE_URL=f"http://127.0.0.1:{port}/dicom-web",
    )
    with running_server(env, port=port) as server:
        client = DICOMwebClient(server.dicomweb)
        study = generate_uid()
        datasets = [make_dataset(StudyInstanceUID=study, InstanceNumber=i) for i in range(5)]
        result = client.store_instances(datasets)
        referenced = result.ReferencedSOPSequence
        assert {item.ReferencedSOPInstanceUID for item in referenced} == {
            ds.SOPInstanceUID for ds in datasets
        }
        assert result.RetrieveURL == f"{server.dicomweb}/studies/{study}"
        assert "FailedSOPSequence" not in result

        # into the study resource, and an identical retry is still a success (STOW-09)
        again = client.store_instances(datasets[:2], study_instance_uid=study)
        assert len(again.ReferencedSOPSequence) == 2
    assert asyncio.run(_instances(fresh_database_url, data_dir)) == 5
