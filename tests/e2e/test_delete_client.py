"""dicomweb-client's ``delete_study`` / ``delete_series`` / ``delete_instance`` against a real
server process (DEL-01/02/04), and the 405 a server with deletion disabled answers."""

from collections.abc import Callable

import pytest
import requests
from pydicom.uid import generate_uid

from tests.e2e.server import DicomwebServer
from tests.factories import make_dataset


def _status(call: Callable[[], object]) -> int:
    with pytest.raises(requests.HTTPError) as info:
        call()
    response = info.value.response
    assert response is not None
    return int(response.status_code)


def test_delete_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    client = dicomweb_server.client
    study, series_a, series_b = (str(generate_uid()) for _ in range(3))
    datasets = [
        make_dataset(StudyInstanceUID=study, SeriesInstanceUID=series, InstanceNumber=i)
        for series in (series_a, series_a, series_b, series_b)
        for i in range(1)
    ]
    client.store_instances(datasets)
    first = datasets[0]

    client.delete_instance(study, series_a, first.SOPInstanceUID)
    assert _status(lambda: client.retrieve_instance(study, series_a, first.SOPInstanceUID)) == 410
    left = client.search_for_studies(search_filters={"StudyInstanceUID": study})
    assert left[0]["00201208"]["Value"] == [3]

    client.delete_series(study, series_b)
    assert _status(lambda: client.retrieve_series(study, series_b)) == 410
    assert len(client.retrieve_series(study, series_a)) == 1

    client.delete_study(study)
    assert _status(lambda: client.retrieve_study_metadata(study)) == 410
    assert client.search_for_studies(search_filters={"StudyInstanceUID": study}) == []
    assert _status(lambda: client.delete_study(study)) == 404


@pytest.mark.server_env(LIGHTBOX_ALLOW_DELETE="false")
def test_delete_disabled_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    client = dicomweb_server.client
    dataset = make_dataset()
    client.store_instances([dataset])
    assert _status(lambda: client.delete_study(dataset.StudyInstanceUID)) == 405
    assert len(client.retrieve_study(dataset.StudyInstanceUID)) == 1
