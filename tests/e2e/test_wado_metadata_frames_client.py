"""dicomweb-client's retrieve_instance_metadata / retrieve_instance_frames / retrieve_bulkdata
against a real server."""

import io
from pathlib import Path

from pydicom import dcmread
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.corpus import corpus_path
from tests.e2e.server import DicomwebServer
from tests.factories import make_dataset

EVRLE = "1.2.840.10008.1.2.1"


def test_metadata_and_frames_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    native = dcmread(io.BytesIO(Path(corpus_path("emri_small.dcm")).read_bytes()))
    jp2 = dcmread(io.BytesIO(Path(corpus_path("emri_small_jpeg_2k_lossless.dcm")).read_bytes()))
    # the two files are one image in two syntaxes, with the same UIDs: make them two instances
    jp2.SOPInstanceUID = jp2.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    client = dicomweb_server.client
    client.store_instances([native, jp2])

    uids = (native.StudyInstanceUID, native.SeriesInstanceUID, native.SOPInstanceUID)
    metadata = client.retrieve_instance_metadata(*uids)
    assert metadata["00080018"]["Value"] == [native.SOPInstanceUID]
    assert metadata["7FE00010"]["BulkDataURI"] == (
        f"{dicomweb_server.dicomweb}/studies/{uids[0]}/series/{uids[1]}/instances/{uids[2]}"
        "/bulkdata/7FE00010"
    )
    assert metadata["00280008"]["Value"] == [10]

    frames = client.retrieve_instance_frames(
        *uids, frame_numbers=[3, 1], media_types=(("application/octet-stream", EVRLE),)
    )
    pixels = native.pixel_array
    assert frames == [pixels[2].tobytes(), pixels[0].tobytes()]
    assert client.retrieve_instance_frames(*uids, frame_numbers=[2]) == [pixels[1].tobytes()]

    # type="*/*" (the default): the JPEG 2000 frames as stored
    frames = client.retrieve_instance_frames(
        jp2.StudyInstanceUID, jp2.SeriesInstanceUID, jp2.SOPInstanceUID, frame_numbers=[10, 4]
    )
    expected = list(generate_frames(jp2.PixelData, number_of_frames=10))
    assert frames == [expected[9], expected[3]]

    # retrieve_bulkdata on the BulkDataURI of the metadata (BULK-01)
    ds = make_dataset(rows=16, columns=16)
    client.store_instances([ds])
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    metadata = client.retrieve_instance_metadata(*uids)
    assert client.retrieve_bulkdata(metadata["7FE00010"]["BulkDataURI"]) == [ds.PixelData]
