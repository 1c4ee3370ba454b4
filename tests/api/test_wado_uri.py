"""WADO-URI over the ASGI app, on PostgreSQL and SQLite (RES-09, URI-01..06)."""

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.uid import (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGLSLossless,
    UltrasoundImageStorage,
    generate_uid,
)

from app.config import RenderSettings
from app.dicom.anonymize import ACTIONS
from tests.api.stored import Obj, store, wado_uri_query
from tests.conftest import app_client, make_settings
from tests.corpus import corpus_path
from tests.factories import make_dataset, to_bytes
from tests.reference_render import reference_gray

WADO = "/dicom-web/wado"


@pytest.fixture
async def ct(client: httpx.AsyncClient) -> Obj:
    return await store(client, corpus_path("CT_small.dcm").read_bytes())


@pytest.fixture
async def multiframe(client: httpx.AsyncClient) -> Obj:
    return await store(client, to_bytes(make_dataset(rows=16, columns=32, frames=4)))


# --- URI-01..03 ---


async def test_default_is_jpeg(client: httpx.AsyncClient, ct: Obj) -> None:
    response = await client.get(WADO, params=wado_uri_query(ct))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["content-location"] == str(response.request.url)
    star = await client.get(WADO, params=wado_uri_query(ct), headers={"Accept": "*/*"})
    assert star.headers["content-type"] == "image/jpeg"
    alias = await client.get(WADO, params=wado_uri_query(ct, contentType="image/jpg"))
    assert alias.headers["content-type"] == "image/jpeg"
    png = await client.get(WADO, params=wado_uri_query(ct, contentType="image/png"))
    assert_png = np.asarray(Image.open(io.BytesIO(png.content)))
    assert np.array_equal(assert_png, reference_gray(ct.ds))
    ordered = await client.get(WADO, params=wado_uri_query(ct, contentType="image/jp2,image/gif"))
    assert ordered.headers["content-type"] == "image/gif"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"requestType": None}, "requestType"),
        ({"requestType": "WADO-RS"}, "requestType"),
        ({"requestType": "wado"}, "requestType"),
        ({"studyUID": None}, "studyUID"),
        ({"seriesUID": None}, "seriesUID"),
        ({"objectUID": None}, "objectUID"),
        ({"objectUID": ""}, "objectUID"),
        ({"studyUID": "1.2.abc"}, "studyUID"),
        ({"seriesUID": "1..2"}, "seriesUID"),
        ({"contentType": "image/jpeg; q=0.5"}, "contentType"),
        ({"contentType": "application/dicom; transfer-syntax=1.2.840.10008.1.2.1"}, "contentType"),
        ({"contentType": "text/html; charset=utf-8"}, "contentType"),
        ({"contentType": "image/*"}, "contentType"),
        ({"contentType": "nonsense"}, "contentType"),
        ({"contentType": ""}, "contentType"),
        # rendered (URI-05)
        ({"rows": "0"}, "rows"),
        ({"rows": "-4"}, "rows"),
        ({"columns": "wide"}, "columns"),
        ({"rows": "²"}, "rows"),
        ({"rows": "9" * 5000}, "rows"),
        ({"frameNumber": "9" * 5000}, "frameNumber"),
        ({"rows": "5000", "columns": "5000"}, "rows and columns"),  # more pixels than the limit
        ({"columns": "70000"}, "columns"),  # wider than JPEG and GIF can be
        ({"region": "0,0,1"}, "region"),
        ({"region": "0.5,0,0.5,1"}, "region"),
        ({"region": "0,0.6,1,0.4"}, "region"),
        ({"region": "0,0,1.5,1"}, "region"),
        ({"region": "-0.1,0,1,1"}, "region"),
        ({"windowCenter": "40"}, "windowCenter"),
        ({"windowWidth": "400"}, "windowCenter"),
        ({"windowCenter": "x", "windowWidth": "400"}, "windowCenter"),
        ({"windowCenter": "40", "windowWidth": "0"}, "windowWidth"),
        ({"imageQuality": "0"}, "imageQuality"),
        ({"imageQuality": "101"}, "imageQuality"),
        ({"imageQuality": ""}, "imageQuality"),
        ({"annotation": ""}, "annotation"),
        ({"imageAnnotation": "patient,$"}, "annotation"),
        ({"frameNumber": "1"}, "frameNumber"),  # not a multi-frame object
        ({"frameNumber": "0"}, "frameNumber"),
        ({"presentationUID": "1.2.3"}, "presentationUID"),  # without presentationSeriesUID
        (
            {"presentationUID": "1.2.3", "presentationSeriesUID": "1.2.4", "region": "0,0,1,1"},
            "region",
        ),
        (
            {
                "presentationUID": "1.2.3",
                "presentationSeriesUID": "1.2.4",
                "windowCenter": "1",
                "windowWidth": "2",
            },
            "windowCenter",
        ),
        ({"presentationUID": "1.2.x", "presentationSeriesUID": "1.2.4"}, "presentationUID"),
        # application/dicom (URI-04)
        ({"contentType": "application/dicom", "transferSyntax": "1.2.x"}, "transferSyntax"),
        ({"contentType": "application/dicom", "transferSyntax": ""}, "transferSyntax"),
        (
            {
                "contentType": "application/dicom",
                "transferSyntax": "1.2.840.10008.1.2.1,1.2.840.10008.1.2",
            },
            "transferSyntax",
        ),
        ({"contentType": "application/dicom", "anonymize": "no"}, "anonymize"),
        ({"contentType": "application/dicom", "anonymize": "YES"}, "anonymize"),
        ({"contentType": "application/dicom", "rows": "64"}, "rows"),
        (
            {"contentType": "application/dicom", "windowCenter": "1", "windowWidth": "2"},
            "windowCenter",
        ),
        (
            {"contentType": "image/jpeg", "transferSyntax": str(ExplicitVRLittleEndian)},
            "transferSyntax",
        ),
        ({"anonymize": "yes"}, "anonymize"),  # rendered: application/dicom only
    ],
)
async def test_bad_requests(
    client: httpx.AsyncClient, ct: Obj, change: dict[str, str | None], named: str
) -> None:
    params: dict[str, Any] = wado_uri_query(ct)
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    response = await client.get(WADO, params=params)
    assert response.status_code == 400, response.text
    assert named in response.json()["detail"]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["content-location"] == str(response.request.url)  # URI-06


async def test_repeated_parameters_are_400(client: httpx.AsyncClient, ct: Obj) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [
        *wado_uri_query(ct).items(),
        ("transferSyntax", str(ExplicitVRLittleEndian)),
    ]
    params += [
        ("contentType", "application/dicom"),
        ("transferSyntax", str(ImplicitVRLittleEndian)),
    ]
    response = await client.get(WADO, params=params)
    assert response.status_code == 400
    assert "transferSyntax" in response.json()["detail"]
    twice = await client.get(WADO, params=[*wado_uri_query(ct).items(), ("objectUID", "1.2.3")])
    assert twice.status_code == 400
    assert "objectUID" in twice.json()["detail"]


async def test_hierarchy_and_406(client: httpx.AsyncClient, ct: Obj) -> None:
    wrong_series = await client.get(WADO, params=wado_uri_query(ct, seriesUID=str(generate_uid())))
    assert wrong_series.status_code == 404
    assert wrong_series.headers["content-location"] == str(wrong_series.request.url)
    wrong_study = await client.get(WADO, params=wado_uri_query(ct, studyUID=str(generate_uid())))
    assert wrong_study.status_code == 404
    jp2 = await client.get(WADO, params=wado_uri_query(ct, contentType="image/jp2"))
    assert jp2.status_code == 406
    # application/dicom asked of the rendered transaction: Accept excludes the contentType
    clash = await client.get(
        WADO,
        params=wado_uri_query(ct, contentType="image/jpeg"),
        headers={"Accept": "application/dicom"},
    )
    assert clash.status_code == 406
    presentation = await client.get(
        WADO, params=wado_uri_query(ct, presentationUID="1.2.3", presentationSeriesUID="1.2.4")
    )
    assert presentation.status_code == 406
    frames = await client.get(WADO, params=wado_uri_query(ct, contentType="text/plain"))
    assert frames.status_code == 406


# --- URI-05: rendered parameters ---


async def test_rendered_parameters(client: httpx.AsyncClient, ct: Obj, multiframe: Obj) -> None:
    full = reference_gray(ct.ds, window=(40, 400, "linear"))
    windowed = await client.get(
        WADO,
        params=wado_uri_query(ct, contentType="image/png", windowCenter="40", windowWidth="400"),
    )
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(windowed.content))), full)
    region = await client.get(
        WADO,
        params=wado_uri_query(
            ct,
            contentType="image/png",
            windowCenter="40",
            windowWidth="400",
            region="0.25,0.5,0.75,1",
        ),
    )
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(region.content))), full[64:, 32:96])
    for params, shape in (
        ({"rows": "64"}, (64, 64)),
        ({"columns": "32"}, (32, 32)),
        ({"rows": "100", "columns": "50"}, (50, 50)),
        ({"rows": "40", "region": "0,0,1,0.5"}, (40, 80)),
    ):
        sized = await client.get(WADO, params=wado_uri_query(ct, contentType="image/png", **params))
        assert sized.status_code == 200, sized.text
        assert np.asarray(Image.open(io.BytesIO(sized.content))).shape == shape
    low = await client.get(WADO, params=wado_uri_query(ct, imageQuality="5"))
    high = await client.get(WADO, params=wado_uri_query(ct, imageQuality="95"))
    assert len(low.content) < len(high.content)
    for name in ("annotation", "imageAnnotation"):
        burned = await client.get(
            WADO, params=wado_uri_query(ct, contentType="image/png", **{name: "patient"})
        )
        assert burned.status_code == 200
        assert not np.array_equal(
            np.asarray(Image.open(io.BytesIO(burned.content))), reference_gray(ct.ds)
        )
    # frameNumber on a multi-frame object
    for n in (1, 4):
        frame = await client.get(
            WADO, params=wado_uri_query(multiframe, contentType="image/png", frameNumber=str(n))
        )
        assert np.array_equal(
            np.asarray(Image.open(io.BytesIO(frame.content))),
            reference_gray(multiframe.ds, frame=n - 1),
        )
    beyond = await client.get(WADO, params=wado_uri_query(multiframe, frameNumber="5"))
    assert beyond.status_code == 400
    assert "frameNumber" in beyond.json()["detail"]


# --- URI-04: application/dicom ---


async def test_dicom_default_and_transfer_syntax(client: httpx.AsyncClient, ct: Obj) -> None:
    raw = corpus_path("CT_small.dcm").read_bytes()
    stored = await client.get(WADO, params=wado_uri_query(ct, contentType="application/dicom"))
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "application/dicom"
    assert stored.content == raw  # stored as Explicit VR Little Endian: sent unchanged
    assert stored.headers["content-location"] == str(stored.request.url)
    same = await client.get(
        WADO,
        params=wado_uri_query(
            ct, contentType="application/dicom", transferSyntax=str(ExplicitVRLittleEndian)
        ),
    )
    assert same.content == raw
    implicit = await client.get(
        WADO,
        params=wado_uri_query(
            ct, contentType="application/dicom", transferSyntax=str(ImplicitVRLittleEndian)
        ),
    )
    assert implicit.status_code == 200
    ds = dcmread(io.BytesIO(implicit.content))
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, ct.ds.pixel_array)
    unsupported = await client.get(
        WADO,
        params=wado_uri_query(
            ct, contentType="application/dicom", transferSyntax=str(JPEGLSLossless)
        ),
    )
    assert unsupported.status_code == 406
    unknown = await client.get(
        WADO, params=wado_uri_query(ct, contentType="application/dicom", transferSyntax="1.2.3.4")
    )
    assert unknown.status_code == 406
    # Accept: application/dicom without contentType is the DICOM transaction too
    accepted = await client.get(
        WADO, params=wado_uri_query(ct), headers={"Accept": "application/dicom"}
    )
    assert accepted.headers["content-type"] == "application/dicom"


async def test_dicom_compressed_is_decoded_to_the_default(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("SC_rgb_jpeg_gdcm.dcm").read_bytes())
    response = await client.get(WADO, params=wado_uri_query(obj, contentType="application/dicom"))
    assert response.status_code == 200
    ds = dcmread(io.BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, obj.ds.pixel_array)
    as_stored = await client.get(
        WADO,
        params=wado_uri_query(
            obj,
            contentType="application/dicom",
            transferSyntax=str(obj.ds.file_meta.TransferSyntaxUID),
        ),
    )
    assert as_stored.content == corpus_path("SC_rgb_jpeg_gdcm.dcm").read_bytes()


# --- anonymize=yes (URI-04, PS3.15 Annex E) ---

IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyID",
    "StudyDescription",
    "SeriesDescription",
    "InstitutionName",
    "OperatorsName",
    "StationName",
    "OtherPatientIDs",
    "PatientAddress",
)


def identified() -> Dataset:
    ds = make_dataset(rows=16, columns=16)
    ds.InstitutionName = "St. Elsewhere"
    ds.OperatorsName = "Operator^Olga"
    ds.StationName = "CT-7"
    ds.OtherPatientIDs = "OTHER-99"
    ds.PatientAddress = "1 Main Street"
    ds.FrameOfReferenceUID = generate_uid()
    ds.add_new(0x00091010, "LO", "private secret")
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = generate_uid()
    item.PatientName = "Nested^Name"
    ds.ReferencedImageSequence = [item]
    return ds


async def test_anonymize(client: httpx.AsyncClient) -> None:
    original = identified()
    obj = await store(client, to_bytes(original))
    response = await client.get(
        WADO, params=wado_uri_query(obj, contentType="application/dicom", anonymize="yes")
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom"
    out = dcmread(io.BytesIO(response.content))
    for keyword in IDENTIFYING:
        value = out.get(keyword)
        assert value in (None, ""), keyword
        if len(str(original.get(keyword))) > 3:  # long enough to be searched for as bytes
            assert str(original.get(keyword)) not in response.content.decode("latin-1"), keyword
    assert "Nested^Name" not in response.content.decode("latin-1")
    assert b"private secret" not in response.content
    assert out.SOPInstanceUID != original.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    for uid in (
        original.StudyInstanceUID,
        original.SeriesInstanceUID,
        original.FrameOfReferenceUID,
    ):
        assert str(uid).encode() not in response.content
    assert out.SOPClassUID == original.SOPClassUID  # registered UIDs are kept
    assert out.PatientIdentityRemoved == "YES"
    assert out.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert np.array_equal(out.pixel_array, original.pixel_array)
    # the same instance anonymised again gets the same new UIDs (studies stay grouped)
    again = dcmread(
        io.BytesIO(
            (
                await client.get(
                    WADO,
                    params=wado_uri_query(obj, contentType="application/dicom", anonymize="yes"),
                )
            ).content
        )
    )
    assert again.SOPInstanceUID == out.SOPInstanceUID
    assert again.StudyInstanceUID == out.StudyInstanceUID
    assert "PatientName" in ACTIONS


async def test_anonymize_cleans_or_refuses_burned_in_text(client: httpx.AsyncClient) -> None:
    # burned-in annotation with no known location: refused, the original is never sent
    burned = await store(client, to_bytes(make_dataset(BurnedInAnnotation="YES")))
    refused = await client.get(
        WADO, params=wado_uri_query(burned, contentType="application/dicom", anonymize="yes")
    )
    assert refused.status_code == 406
    assert b"Doe^Jane" not in refused.content
    # ultrasound with regions: everything outside the regions is blanked
    ds = make_dataset(
        rows=16, columns=16, BurnedInAnnotation="YES", SOPClassUID=UltrasoundImageStorage
    )
    region = Dataset()
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 4, 2
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = 11, 13
    ds.SequenceOfUltrasoundRegions = [region]
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    obj = await store(client, to_bytes(ds))
    response = await client.get(
        WADO, params=wado_uri_query(obj, contentType="application/dicom", anonymize="yes")
    )
    assert response.status_code == 200, response.text
    out = dcmread(io.BytesIO(response.content))
    expected = ds.pixel_array.copy()
    mask = np.zeros(expected.shape, dtype=bool)
    mask[2:14, 4:12] = True
    expected[~mask] = 0
    assert np.array_equal(out.pixel_array, expected)
    assert out.BurnedInAnnotation == "NO"
    assert [c.CodeValue for c in out.DeidentificationMethodCodeSequence] == ["113100", "113101"]


async def test_sr_as_text(client: httpx.AsyncClient) -> None:
    sr = await store(client, corpus_path("test-SR.dcm").read_bytes())
    default = await client.get(WADO, params=wado_uri_query(sr))
    assert default.status_code == 200
    assert default.headers["content-type"].startswith("text/html")
    plain = await client.get(WADO, params=wado_uri_query(sr, contentType="text/plain"))
    assert plain.headers["content-type"].startswith("text/plain")
    assert (
        await client.get(WADO, params=wado_uri_query(sr, contentType="image/jpeg"))
    ).status_code == 406


async def test_dicom_big_endian_is_re_encoded(client: httpx.AsyncClient) -> None:
    raw = corpus_path("MR_small_bigendian.dcm").read_bytes()
    obj = await store(client, raw)
    response = await client.get(WADO, params=wado_uri_query(obj, contentType="application/dicom"))
    assert response.status_code == 200, response.text
    ds = dcmread(io.BytesIO(response.content))
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, obj.ds.pixel_array)
    assert ds.PatientName == obj.ds.PatientName


async def test_anonymize_salt_setting_keeps_uids_across_processes(
    database_url: str, tmp_path: Path
) -> None:
    """With LIGHTBOX_RENDER__ANONYMIZE_SALT two service instances replace UIDs alike."""
    raw = to_bytes(identified())
    new_uids = []
    for run in range(2):
        settings = make_settings(
            database_url, tmp_path / f"data{run}", render={"anonymize_salt": "s3cret"}
        )
        async with app_client(settings) as (_, http):
            obj = await store(http, raw)
            response = await http.get(
                WADO, params=wado_uri_query(obj, contentType="application/dicom", anonymize="yes")
            )
            assert response.status_code == 200
            new_uids.append(dcmread(io.BytesIO(response.content)).SOPInstanceUID)
    assert new_uids[0] == new_uids[1]


async def test_rows_and_columns_never_enlarge_beyond_the_limit(
    database_url: str, tmp_path: Path
) -> None:
    """URI-05 with ``render.max_output_pixels``: rows x columns beyond it is 400 naming them; one
    of them alone (the other side open), with or without a region, enlarges the image to the
    largest size within the limit, never beyond."""
    limits = RenderSettings(max_output_pixels=64 * 64)
    settings = make_settings(database_url, tmp_path / "data", render=limits)
    async with app_client(settings) as (_services, client):
        tiny = await store(client, to_bytes(make_dataset(rows=8, columns=8)))
        png = {"contentType": "image/png"}

        async def size(**params: str) -> tuple[int, int]:
            response = await client.get(WADO, params=wado_uri_query(tiny, **png, **params))
            assert response.status_code == 200, response.text
            width, height = Image.open(io.BytesIO(response.content)).size
            return width, height

        assert await size(rows="64", columns="64") == (64, 64)
        assert await size(columns="4096") == (64, 64)
        assert await size(rows="4096") == (64, 64)
        # a region of 4 x 8 pixels, enlarged: within 64 x 64 pixels in all, aspect kept
        assert await size(columns="4000", region="0,0,0.5,1") == (45, 90)
        refused = await client.get(
            WADO, params=wado_uri_query(tiny, **png, rows="65", columns="64")
        )
        assert refused.status_code == 400
        assert "rows and columns: 64 x 65 is 4160 pixels" in refused.json()["detail"]
        alone = await client.get(WADO, params=wado_uri_query(tiny, **png, columns="4097"))
        assert alone.status_code == 400
        assert "invalid columns: 4097" in alone.json()["detail"]


async def test_served_at_the_root_too(client: httpx.AsyncClient, ct: Obj) -> None:
    """Legacy integrations call ``/wado`` at the server's root (the README's address): the same
    transaction as ``{root}/wado``, listed once in the OpenAPI document."""
    dicom = wado_uri_query(ct, contentType="application/dicom")
    at_root = await client.get("/wado", params=dicom)
    assert at_root.status_code == 200
    assert at_root.content == (await client.get(WADO, params=dicom)).content
    assert at_root.headers["content-location"] == str(at_root.request.url)
    jpeg = await client.get("/wado", params=wado_uri_query(ct))
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert (await client.head("/wado", params=wado_uri_query(ct))).status_code == 200
    wrong = await client.post("/wado", params=wado_uri_query(ct))
    assert wrong.status_code == 405
    assert "GET" in wrong.headers["allow"]
    bad = await client.get("/wado", params={"requestType": "WADO"})
    assert bad.status_code == 400
    paths = client._transport.app.openapi()["paths"]  # type: ignore[attr-defined]
    assert "/dicom-web/wado" in paths
    assert "/wado" not in paths
