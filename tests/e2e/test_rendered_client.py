"""dicomweb-client's retrieve_*_rendered against a real server process (REND, THUMB, URI).

dicomweb-client has no thumbnail or WADO-URI methods; those are fetched with httpx from the
same server.
"""

import io

import numpy as np
from PIL import Image
from pydicom import dcmread

from tests.corpus import corpus_path
from tests.e2e.server import DicomwebServer
from tests.reference_render import reference_gray


def test_rendered_with_dicomweb_client(dicomweb_server: DicomwebServer) -> None:
    client = dicomweb_server.client
    ct = dcmread(corpus_path("CT_small.dcm"))
    us = dcmread(corpus_path("examples_ybr_color.dcm"))
    sr = dcmread(corpus_path("test-SR.dcm"))
    client.store_instances([ct, us, sr])
    ct_uids = (ct.StudyInstanceUID, ct.SeriesInstanceUID, ct.SOPInstanceUID)

    png = client.retrieve_instance_rendered(
        *ct_uids, media_types=("image/png",), params={"window": "40,400,linear"}
    )
    image = np.asarray(Image.open(io.BytesIO(png)))
    assert np.array_equal(image, reference_gray(ct, window=(40, 400, "linear")))

    jpeg = client.retrieve_instance_rendered(*ct_uids, media_types=("image/jpeg",))
    decoded = np.asarray(Image.open(io.BytesIO(jpeg))).astype(float)
    assert np.abs(decoded - reference_gray(ct).astype(float)).mean() < 4

    small = client.retrieve_instance_rendered(
        *ct_uids, media_types=("image/png",), params={"viewport": "64,64"}
    )
    assert Image.open(io.BytesIO(small)).size == (64, 64)

    frame = client.retrieve_instance_frames_rendered(
        us.StudyInstanceUID,
        us.SeriesInstanceUID,
        us.SOPInstanceUID,
        frame_numbers=[2],
        media_types=("image/png",),
    )
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(frame))), us.pixel_array[1])

    series = client.retrieve_series_rendered(
        ct.StudyInstanceUID, ct.SeriesInstanceUID, media_types=("image/jpeg",)
    )
    assert series.startswith(b"--")
    assert b"Content-Type: image/jpeg" in series

    html = client.retrieve_instance_rendered(
        sr.StudyInstanceUID,
        sr.SeriesInstanceUID,
        sr.SOPInstanceUID,
        media_types=("text/html",),
    )
    assert b"<!DOCTYPE html>" in html

    base = dicomweb_server.dicomweb
    with dicomweb_server.http() as http:
        thumb = http.get(
            f"{base}/studies/{us.StudyInstanceUID}/series/{us.SeriesInstanceUID}/thumbnail"
        )
        assert thumb.status_code == 200
        assert thumb.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(thumb.content)).size == (128, 96)
        wado = http.get(
            f"{base}/wado",
            params={
                "requestType": "WADO",
                "studyUID": ct.StudyInstanceUID,
                "seriesUID": ct.SeriesInstanceUID,
                "objectUID": ct.SOPInstanceUID,
                "contentType": "application/dicom",
                "anonymize": "yes",
            },
        )
        assert wado.status_code == 200
        anonymised = dcmread(io.BytesIO(wado.content))
        assert anonymised.SOPInstanceUID != ct.SOPInstanceUID
        assert str(ct.PatientName) not in wado.content.decode("latin-1")
