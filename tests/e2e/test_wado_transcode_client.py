"""dicomweb-client against a real server: transcoding, decoded frames, metadata, bulk data with
byte ranges, plus raw wire checks of the multipart framing (issue 4 tests; NEG, FRM, BULK)."""

import io
import re
from pathlib import Path

import httpx
import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.corpus import corpus_path
from tests.e2e.server import DicomwebServer

EVRLE = "1.2.840.10008.1.2.1"


def _corpus(name: str, study: str, series: str, number: int) -> Dataset:
    """A corpus file moved into one study/series with a fresh SOP Instance UID."""
    ds = dcmread(io.BytesIO(Path(corpus_path(name)).read_bytes()))
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = 1, number
    ds.PatientID, ds.PatientName = "E2E-4", "Wado^Test"
    return ds


def test_dicomweb_client_transcoding_frames_bulk(dicomweb_server: DicomwebServer) -> None:
    study, series = str(generate_uid()), str(generate_uid())
    datasets = [
        _corpus("emri_small_jpeg_2k_lossless.dcm", study, series, 1),
        _corpus("SC_rgb_rle_2frame.dcm", study, series, 2),
        _corpus("MR_small_bigendian.dcm", study, series, 3),
        _corpus("emri_small_jpeg_ls_lossless.dcm", study, series, 4),
    ]
    originals = [ds.pixel_array for ds in datasets]
    client = dicomweb_server.client
    client.store_instances(datasets)

    # retrieve_study with its default Accept: everything decoded to EVRLE (NEG-07/08)
    retrieved = client.retrieve_study(study)
    assert [ds.SOPInstanceUID for ds in retrieved] == [ds.SOPInstanceUID for ds in datasets]
    for ds, pixels in zip(retrieved, originals, strict=True):
        assert ds.file_meta.TransferSyntaxUID == EVRLE
        assert np.array_equal(ds.pixel_array, pixels)

    # series as stored, except big endian which never goes out (NEG-08)
    stored = client.retrieve_series(study, series, media_types=(("application/dicom", "*"),))
    assert [str(ds.file_meta.TransferSyntaxUID) for ds in stored] == [
        str(datasets[0].file_meta.TransferSyntaxUID),
        str(datasets[1].file_meta.TransferSyntaxUID),
        EVRLE,
        str(datasets[3].file_meta.TransferSyntaxUID),
    ]
    assert stored[0].PixelData == datasets[0].PixelData

    rle = datasets[1]
    uids = (study, series, rle.SOPInstanceUID)
    instance = client.retrieve_instance(*uids, media_types=(("application/dicom", EVRLE),))
    assert np.array_equal(instance.pixel_array, originals[1])

    [metadata] = client.retrieve_series_metadata(study, series)[1:2]
    assert metadata["00080018"]["Value"] == [rle.SOPInstanceUID]
    assert client.retrieve_study_metadata(study)[1] == metadata
    assert client.retrieve_instance_metadata(*uids) == metadata

    # frames: decoded octet-stream (FRM-05), as stored with type="*/*" (the default)
    frames = client.retrieve_instance_frames(
        *uids, frame_numbers=[2, 1], media_types=(("application/octet-stream", EVRLE),)
    )
    assert frames == [originals[1][1].tobytes(), originals[1][0].tobytes()]
    frames = client.retrieve_instance_frames(*uids, frame_numbers=[2])
    assert frames == [list(generate_frames(rle.PixelData, number_of_frames=2))[1]]
    jls = datasets[3]
    frames = client.retrieve_instance_frames(
        study,
        series,
        jls.SOPInstanceUID,
        frame_numbers=[7],
        media_types=(("image/jls", "1.2.840.10008.1.2.4.80"),),
    )
    assert frames == [list(generate_frames(jls.PixelData, number_of_frames=10))[6]]

    # bulk data by BulkDataURI, whole and a byte range (BULK-01/04)
    uri = metadata["7FE00010"]["BulkDataURI"]
    assert uri.startswith(dicomweb_server.dicomweb)
    assert client.retrieve_bulkdata(uri) == [rle.PixelData]
    assert client.retrieve_bulkdata(uri, byte_range=(8, 23)) == [rle.PixelData[8:24]]

    # raw wire: top-level type and transfer-syntax, delimiters, part headers (NEG-10)
    response = httpx.get(
        f"{dicomweb_server.dicomweb}/studies/{study}/series/{series}/instances/{rle.SOPInstanceUID}"
        "/frames/1,2",
        headers={
            **dicomweb_server.headers,
            "Accept": 'multipart/related; type="application/octet-stream"',
        },
    )
    content_type = response.headers["content-type"]
    match = re.fullmatch(
        r'multipart/related; type="application/octet-stream"; '
        r"transfer-syntax=1\.2\.840\.10008\.1\.2\.1; boundary=(\w+)",
        content_type,
    )
    assert match, content_type
    boundary = match[1].encode()
    frame = originals[1][0].tobytes()
    location = f"{dicomweb_server.dicomweb}/studies/{study}/series/{series}/instances/"
    head = (
        b"--"
        + boundary
        + b"\r\nContent-Type: application/octet-stream; transfer-syntax="
        + EVRLE.encode()
        + b"\r\nContent-Location: "
        + f"{location}{rle.SOPInstanceUID}/frames/1".encode()
        + f"\r\nContent-Length: {len(frame)}\r\n\r\n".encode()
    )
    assert response.content.startswith(head + frame + b"\r\n--" + boundary + b"\r\n")
    assert response.content.endswith(b"\r\n--" + boundary + b"--\r\n")
    assert response.content.count(b"--" + boundary) == 3
