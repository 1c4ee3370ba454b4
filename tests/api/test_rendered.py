"""Rendered resources and thumbnails over the ASGI app, on PostgreSQL and SQLite (REND, THUMB).

Every rendering is compared with a reference computed here from pydicom + numpy, following
PS3.3 C.11 independently of :mod:`app.dicom.render`: PNG exactly, JPEG within a tolerance.
"""

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import GifImagePlugin, Image
from pydicom import Dataset, dcmread
from pydicom.dataset import FileMetaDataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.config import RenderSettings
from app.dicom.target import Target
from app.services.container import Services
from tests.api.stored import ROOT, store
from tests.conftest import app_client, make_settings
from tests.corpus import corpus_path
from tests.factories import make_dataset, make_pdf_dataset, multipart, stow_headers, to_bytes
from tests.multipart import parse_multipart
from tests.reference_render import assert_jpeg, assert_png, decoded, reference_gray, voi


def with_meta(path: Path) -> bytes:
    """A corpus file as a PS3.10 file with File Meta (some corpus files have none)."""
    ds = dcmread(path, force=True)
    if "TransferSyntaxUID" not in getattr(ds, "file_meta", Dataset()):
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


PNG = {"Accept": "image/png"}


# --- grayscale: CT with rescale, MR, MONOCHROME1 ---


async def test_ct_with_rescale(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("CT_small.dcm").read_bytes())
    assert obj.ds.RescaleIntercept == -1024
    assert "WindowCenter" not in obj.ds
    response = await client.get(f"{obj.url}/rendered", headers=PNG)
    assert_png(response, reference_gray(obj.ds))  # min/max of the rescaled values
    for function in ("linear", "linear-exact", "sigmoid"):
        response = await client.get(
            f"{obj.url}/rendered", params={"window": f"40,400,{function}"}, headers=PNG
        )
        assert_png(response, reference_gray(obj.ds, window=(40, 400, function)))
    jpeg = await client.get(f"{obj.url}/rendered", params={"window": "40,400,linear"})
    assert_jpeg(jpeg, reference_gray(obj.ds, window=(40, 400, "linear")))
    assert jpeg.headers["cache-control"] == "private"
    assert int(jpeg.headers["content-length"]) == len(jpeg.content)


async def test_mr_dataset_window(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("MR_small.dcm").read_bytes())
    response = await client.get(f"{obj.url}/rendered", headers=PNG)
    assert_png(response, reference_gray(obj.ds))  # WindowCenter 600 / WindowWidth 1600
    response = await client.get(
        f"{obj.url}/rendered", params={"window": "300,600,linear-exact"}, headers=PNG
    )
    assert_png(response, reference_gray(obj.ds, window=(300, 600, "linear-exact")))


async def test_monochrome1_is_inverted(client: httpx.AsyncClient) -> None:
    ds = make_dataset(
        rows=16,
        columns=16,
        PhotometricInterpretation="MONOCHROME1",
        RescaleSlope=2,
        RescaleIntercept=-100,
        WindowCenter=1000,
        WindowWidth=2000,
        VOILUTFunction="SIGMOID",
    )
    obj = await store(client, to_bytes(ds))
    expected = reference_gray(ds)
    assert expected[0, 0] > 200  # low values are white in MONOCHROME1
    assert_png(await client.get(f"{obj.url}/rendered", headers=PNG), expected)
    windowed = await client.get(
        f"{obj.url}/rendered", params={"window": "500,1000,linear"}, headers=PNG
    )
    assert_png(windowed, reference_gray(ds, window=(500, 1000, "linear")))


# --- colour: RGB, YBR, palette; multi-frame ---


async def test_rgb(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("US1_UNCR.dcm").read_bytes())
    assert obj.ds.PhotometricInterpretation == "RGB"
    response = await client.get(f"{obj.url}/rendered", headers=PNG)
    assert_png(response, obj.ds.pixel_array)
    # window is ignored for colour images (REND-05)
    windowed = await client.get(f"{obj.url}/rendered", params={"window": "1,1,linear"}, headers=PNG)
    assert_png(windowed, obj.ds.pixel_array)
    assert_jpeg(await client.get(f"{obj.url}/rendered"), obj.ds.pixel_array)


async def test_ybr_multiframe_us(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("examples_ybr_color.dcm").read_bytes())
    ds = obj.ds
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds.NumberOfFrames == 30
    frames = ds.pixel_array  # pydicom converts YBR to RGB
    # the instance: frame 1 (documented deviation) unless GIF is asked for
    assert_png(await client.get(f"{obj.url}/rendered", headers=PNG), frames[0])
    assert_jpeg(await client.get(f"{obj.url}/frames/3/rendered"), frames[2], tolerance=6)
    assert_png(await client.get(f"{obj.url}/frames/7/rendered", headers=PNG), frames[6])
    # several frames: multipart/related, one image per frame, in the order asked
    several = await client.get(
        f"{obj.url}/frames/5,2/rendered", headers={"Accept": 'multipart/related; type="image/png"'}
    )
    part_type, _, parts = parse_multipart(several)
    assert part_type == "image/png"
    assert [p.headers["Content-Location"] for p in parts] == [
        f"http://testserver{obj.url}/frames/{n}/rendered" for n in (5, 2)
    ]
    for part, n in zip(parts, (5, 2), strict=True):
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(part.payload))), frames[n - 1])
    # animated GIF of the whole instance (REND-08)
    gif = await client.get(f"{obj.url}/rendered", headers={"Accept": "image/gif"})
    assert gif.status_code == 200
    assert gif.headers["content-type"] == "image/gif"
    animation = Image.open(io.BytesIO(gif.content))
    assert isinstance(animation, GifImagePlugin.GifImageFile)
    # Pillow merges identical consecutive frames, adding up their durations
    durations = []
    for index in range(animation.n_frames):
        animation.seek(index)
        durations.append(animation.info["duration"])
    assert animation.n_frames > 1
    # GIF durations are in 10 ms steps: FrameTime 33.333 ms becomes 30 ms a frame
    assert sum(durations) == pytest.approx(30 * float(ds.FrameTime), abs=30 * 10)
    beyond = await client.get(f"{obj.url}/frames/31/rendered")
    assert beyond.status_code == 404


async def test_palette_colour(client: httpx.AsyncClient) -> None:
    obj = await store(client, with_meta(corpus_path("OT-PAL-8-face.dcm")))
    ds = obj.ds
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    rgb = apply_color_lut(ds.pixel_array, ds)
    expected = rgb if rgb.dtype == np.uint8 else (rgb >> 8).astype(np.uint8)
    assert_png(await client.get(f"{obj.url}/rendered", headers=PNG), expected)


# --- viewport: crop, flips, elided values, scaling (REND-04) ---


async def test_viewport(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("CT_small.dcm").read_bytes())
    full = reference_gray(obj.ds, window=(40, 400, "linear"))
    params = {"window": "40,400,linear"}

    async def get(viewport: str) -> httpx.Response:
        return await client.get(
            f"{obj.url}/rendered", params={**params, "viewport": viewport}, headers=PNG
        )

    assert_png(await get("32,16,10,20,32,16"), full[20:36, 10:42])
    assert_png(await get("32,16,10,20,-32,16"), full[20:36, 10:42][:, ::-1])
    assert_png(await get("32,16,10,20,32,-16"), full[20:36, 10:42][::-1, :])
    assert_png(await get("28,118,100,10,,"), full[10:, 100:])  # elided sw, sh: to the edges
    assert_png(await get("128,128,,,,"), full)
    scaled = await get("64,32")  # keeps the aspect ratio: 128x128 fits as 32x32
    assert decoded(scaled).shape == (32, 32)
    up = await get("300,256")
    assert decoded(up).shape == (256, 256)


# --- parameters that are 400 (REND-03..07) ---


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"quality": "0"}, "quality"),
        ({"quality": "101"}, "quality"),
        ({"quality": ""}, "quality"),
        ({"quality": "high"}, "quality"),
        ({"viewport": "512"}, "viewport"),
        ({"viewport": "0,512"}, "viewport"),
        ({"viewport": "-5,512"}, "viewport"),
        ({"viewport": "a,b"}, "viewport"),
        ({"viewport": "512,512,1,2,3"}, "viewport"),
        ({"viewport": "512,512,-1,0,10,10"}, "viewport"),
        ({"viewport": "65500,65500"}, "viewport"),  # more pixels than the limit
        ({"viewport": "70000,1"}, "viewport"),  # wider than JPEG can be
        ({"viewport": "²,2"}, "viewport"),
        ({"quality": "²"}, "quality"),
        ({"window": "40,400"}, "window"),
        ({"window": "40,0,linear"}, "window"),
        ({"window": "40,-1,sigmoid"}, "window"),
        ({"window": "40,400,cubic"}, "window"),
        ({"window": "x,400,linear"}, "window"),
        ({"window": "40,0.5,linear"}, "window"),
        ({"annotation": ""}, "annotation"),
        ({"annotation": "patient,<b>"}, "annotation"),
        ({"iccprofile": "maybe"}, "iccprofile"),
    ],
)
async def test_bad_parameters(
    client: httpx.AsyncClient, params: dict[str, str], named: str
) -> None:
    obj = await store(client, make_instance_bytes())
    response = await client.get(f"{obj.url}/rendered", params=params)
    assert response.status_code == 400
    assert named in response.json()["detail"]


def make_instance_bytes() -> bytes:
    return to_bytes(make_dataset(rows=16, columns=16))


async def test_iccprofile_and_quality(client: httpx.AsyncClient) -> None:
    obj = await store(client, corpus_path("US1_UNCR.dcm").read_bytes())
    gif = await client.get(
        f"{obj.url}/rendered", params={"iccprofile": "yes"}, headers={"Accept": "image/gif"}
    )
    assert gif.status_code == 400
    assert "iccprofile" in gif.json()["detail"]
    assert (
        await client.get(
            f"{obj.url}/rendered", params={"iccprofile": "no"}, headers={"Accept": "image/gif"}
        )
    ).status_code == 200
    srgb = await client.get(f"{obj.url}/rendered", params={"iccprofile": "srgb"}, headers=PNG)
    assert Image.open(io.BytesIO(srgb.content)).info.get("icc_profile")
    plain = await client.get(f"{obj.url}/rendered", headers=PNG)
    assert not Image.open(io.BytesIO(plain.content)).info.get("icc_profile")
    ignored = await client.get(
        f"{obj.url}/rendered", params={"iccprofile": "adobergb"}, headers=PNG
    )
    assert ignored.content == plain.content
    low = await client.get(f"{obj.url}/rendered", params={"quality": "5"})
    high = await client.get(f"{obj.url}/rendered", params={"quality": "100"})
    assert len(low.content) < len(high.content)
    # quality does not matter for PNG: same bytes, same ETag
    png5 = await client.get(f"{obj.url}/rendered", params={"quality": "5"}, headers=PNG)
    assert png5.headers["etag"] == plain.headers["etag"]


async def test_annotation(client: httpx.AsyncClient) -> None:
    obj = await store(client, to_bytes(make_dataset(rows=64, columns=128)))
    plain = await client.get(f"{obj.url}/rendered", headers=PNG)
    burned = await client.get(
        f"{obj.url}/rendered", params={"annotation": "patient,technique"}, headers=PNG
    )
    assert burned.status_code == 200
    assert not np.array_equal(decoded(plain), decoded(burned))
    assert "warning" not in burned.headers
    partly = await client.get(
        f"{obj.url}/rendered", params={"annotation": "technique,overlay"}, headers=PNG
    )
    assert partly.status_code == 200
    assert partly.headers["warning"].startswith("299 ")
    assert "The following annotation values are not supported: overlay" in partly.headers["warning"]


# --- negotiation, headers, caching (REND-01, REND-09, REND-10) ---


async def test_negotiation_etag_and_cache(client: httpx.AsyncClient) -> None:
    obj = await store(client, make_instance_bytes())
    url = f"{obj.url}/rendered"
    default = await client.get(url)
    assert default.headers["content-type"] == "image/jpeg"
    assert (await client.get(url, headers={"Accept": "image/*"})).headers[
        "content-type"
    ] == "image/jpeg"
    assert (await client.get(url, params={"accept": "image/gif"})).headers[
        "content-type"
    ] == "image/gif"
    refused = await client.get(url, headers={"Accept": "image/jp2"})
    assert refused.status_code == 406
    assert (await client.get(url, headers={"Accept": "text/html"})).status_code == 406
    syntax = await client.get(
        url, headers={"Accept": "image/jpeg; transfer-syntax=1.2.840.10008.1.2.4.50"}
    )
    assert syntax.status_code == 406
    etag = default.headers["etag"]
    again = await client.get(url)
    assert again.headers["etag"] == etag
    assert again.content == default.content
    not_modified = await client.get(url, headers={"If-None-Match": etag})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    other = await client.get(url, params={"quality": "50"})
    assert other.headers["etag"] != etag
    assert (await client.get(url, headers={"If-None-Match": '"nope"'})).status_code == 200


def sr_bytes() -> bytes:
    return corpus_path("test-SR.dcm").read_bytes()


def pdf_dataset() -> Dataset:
    document = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF"
    return make_pdf_dataset(document + b"\0", EncapsulatedDocumentLength=len(document))


async def test_sr_and_pdf(client: httpx.AsyncClient) -> None:
    sr = await store(client, sr_bytes())
    html = await client.get(f"{sr.url}/rendered")
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    meaning = sr.ds.ContentSequence[0].ConceptNameCodeSequence[0].CodeMeaning
    assert meaning in html.text
    assert html.text.startswith("<!DOCTYPE html>")
    text = await client.get(f"{sr.url}/rendered", headers={"Accept": "text/plain"})
    assert text.headers["content-type"].startswith("text/plain")
    assert meaning in text.text
    assert (
        await client.get(f"{sr.url}/rendered", headers={"Accept": "image/jpeg"})
    ).status_code == 406
    assert (await client.get(f"{sr.url}/thumbnail")).status_code == 406
    assert (await client.get(f"{sr.url}/frames/1/rendered")).status_code == 404
    pdf = await store(client, to_bytes(pdf_dataset()))
    doc = await client.get(f"{pdf.url}/rendered")
    assert doc.status_code == 200
    assert doc.headers["content-type"] == "application/pdf"
    assert doc.content.startswith(b"%PDF-1.4")
    assert doc.content.endswith(b"%%EOF")
    assert (
        await client.get(f"{pdf.url}/rendered", headers={"Accept": "image/png"})
    ).status_code == 406


# --- study and series: multipart of per-instance renderings (REND-08) ---


async def _study(client: httpx.AsyncClient) -> tuple[str, list[str], list[Dataset]]:
    study = str(generate_uid())
    series = [str(generate_uid()), str(generate_uid())]
    datasets: list[Dataset] = []
    # series 2 first; instance numbers out of order; series 1 holds 3 images, series 2 two
    for s, n in ((1, 2), (1, 1), (0, 3), (0, 1), (0, 2)):
        ds = make_dataset(
            rows=8 + n,
            columns=8 + 2 * n,
            StudyInstanceUID=study,
            SeriesInstanceUID=series[s],
            SeriesNumber=s + 1,
            InstanceNumber=n,
        )
        datasets.append(ds)
    response = await client.post(
        f"{ROOT}/studies",
        content=multipart([to_bytes(d) for d in datasets]),
        headers=stow_headers(),
    )
    assert response.status_code == 200
    return study, series, sorted(datasets, key=lambda d: (d.SeriesNumber, d.InstanceNumber))


async def test_study_and_series_rendered(client: httpx.AsyncClient) -> None:
    study, series, ordered = await _study(client)
    sr = dcmread(io.BytesIO(sr_bytes()))
    sr.StudyInstanceUID = study
    buffer = io.BytesIO()
    sr.save_as(buffer)
    await client.post(
        f"{ROOT}/studies", content=multipart([buffer.getvalue()]), headers=stow_headers()
    )
    response = await client.get(f"{ROOT}/studies/{study}/rendered", headers=PNG)
    assert response.status_code == 200
    part_type, _, parts = parse_multipart(response)
    assert part_type == "image/png"
    assert len(parts) == 5  # the SR is left out
    for part, ds in zip(parts, ordered, strict=True):
        assert part.headers["Content-Location"].endswith(f"/instances/{ds.SOPInstanceUID}/rendered")
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(part.payload))), reference_gray(ds))
    in_series = await client.get(f"{ROOT}/studies/{study}/series/{series[1]}/rendered")
    _, _, parts = parse_multipart(in_series)
    assert len(parts) == 2
    assert all(p.headers["Content-Type"] == "image/jpeg" for p in parts)
    assert in_series.headers["etag"]
    missing = await client.get(f"{ROOT}/studies/{generate_uid()}/rendered")
    assert missing.status_code == 404
    assert (await client.get(f"{ROOT}/studies/1.2.x/rendered")).status_code == 400


# --- thumbnails (THUMB-01/02) ---


async def test_thumbnails(client: httpx.AsyncClient) -> None:
    study, series, ordered = await _study(client)
    # study: first series by SeriesNumber, its middle instance by InstanceNumber (number 2)
    thumb = await client.get(f"{ROOT}/studies/{study}/thumbnail", headers=PNG)
    assert thumb.status_code == 200
    assert thumb.headers["cache-control"] == "private"
    chosen = ordered[1]
    assert chosen.SeriesNumber == 1
    assert chosen.InstanceNumber == 2
    image = decoded(thumb)
    assert max(image.shape) == 128  # default longest edge
    expected_size = (round(chosen.Rows * 128 / chosen.Columns), 128)
    assert image.shape == expected_size
    reference = Image.fromarray(reference_gray(chosen)).resize(
        (128, expected_size[0]), Image.Resampling.BICUBIC
    )
    assert np.array_equal(image, np.asarray(reference))
    series_thumb = await client.get(
        f"{ROOT}/studies/{study}/series/{series[1]}/thumbnail", headers=PNG
    )
    second = ordered[3]  # series 2 holds instances 1 and 2: the middle one is 1 (lower middle)
    assert second.InstanceNumber == 1
    assert decoded(series_thumb).shape == (round(second.Rows * 128 / second.Columns), 128)
    sized = await client.get(
        f"{ROOT}/studies/{study}/series/{series[0]}/instances/{chosen.SOPInstanceUID}/thumbnail",
        params={"viewport": "64,64", "annotation": "patient", "window": "1,1,linear"},
        headers=PNG,
    )
    assert decoded(sized).shape == (round(chosen.Rows * 64 / chosen.Columns), 64)
    # no PHI: annotation is ignored (THUMB-01), the image is the plain rendering
    plain = Image.fromarray(reference_gray(chosen)).resize(
        (64, round(chosen.Rows * 64 / chosen.Columns)), Image.Resampling.BICUBIC
    )
    assert np.array_equal(decoded(sized), np.asarray(plain))
    bad = await client.get(
        f"{ROOT}/studies/{study}/thumbnail", params={"viewport": "64,64,0,0,10,10"}
    )
    assert bad.status_code == 400
    assert "viewport" in bad.json()["detail"]


async def test_multiframe_thumbnail_is_the_middle_frame(
    client: httpx.AsyncClient, services: Services
) -> None:
    obj = await store(client, corpus_path("examples_ybr_color.dcm").read_bytes())
    # JPEG frames are read as byte ranges (header + one frame), not as the whole blob
    source = (await services.render.sources(Target(obj.study, obj.series, obj.ds.SOPInstanceUID)))[
        0
    ]
    ranged = await services.render._read_frame(source, 15)
    assert ranged is not None
    assert ranged[1].startswith(b"\xff\xd8")
    assert len(ranged[0]) + len(ranged[1]) < source.ref.size / 4
    middle = obj.ds.pixel_array[14]  # frame 15 of 30
    thumb = await client.get(f"{obj.url}/thumbnail", params={"viewport": "320,320"}, headers=PNG)
    assert np.array_equal(decoded(thumb), middle)
    frame = await client.get(
        f"{obj.url}/frames/4/thumbnail", params={"viewport": "320,320"}, headers=PNG
    )
    assert np.array_equal(decoded(frame), obj.ds.pixel_array[3])
    series = await client.get(
        f"{ROOT}/studies/{obj.study}/series/{obj.series}/thumbnail", headers=PNG
    )
    assert decoded(series).shape == (96, 128, 3)
    etag = series.headers["etag"]
    again = await client.get(
        f"{ROOT}/studies/{obj.study}/series/{obj.series}/thumbnail",
        headers={**PNG, "If-None-Match": etag},
    )
    assert again.status_code == 304


async def test_frames_from_byte_ranges_with_functional_groups(
    client: httpx.AsyncClient, services: Services
) -> None:
    """Per-frame VOI of enhanced objects (PS3.3 C.7.6.16) and frames read as byte ranges."""
    ds = make_dataset(rows=8, columns=8, frames=3)
    shared = Dataset()
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -10, "US"
    shared.PixelValueTransformationSequence = [transform]
    ds.SharedFunctionalGroupsSequence = [shared]
    windows = [(100.0, 60.0), (300.0, 200.0), (500.0, 1000.0)]
    per_frame = []
    for center, width in windows:
        item, voi_item = Dataset(), Dataset()
        voi_item.WindowCenter, voi_item.WindowWidth = center, width
        item.FrameVOILUTSequence = [voi_item]
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = per_frame
    obj = await store(client, to_bytes(ds))
    for n, (center, width) in enumerate(windows, start=1):
        modality = ds.pixel_array[n - 1].astype(np.float64) * 2 - 10
        expected = voi(modality, center, width, "linear")
        response = await client.get(f"{obj.url}/frames/{n}/rendered", headers=PNG)
        assert_png(response, expected)
    source = (await services.render.sources(Target(obj.study, obj.series, ds.SOPInstanceUID)))[0]
    ranged = await services.render._read_frame(source, 2)
    assert ranged is not None
    assert ranged[1] == ds.pixel_array[1].tobytes()


# --- output size limits (render.max_output_pixels, render.max_animation_pixels) ---


async def test_huge_viewport_on_a_tiny_image_is_refused_at_once(client: httpx.AsyncClient) -> None:
    """A viewport of 65500 x 65500 on an 8 x 8 image used to render a 51 MB JPEG (4.3 GB of
    memory): it is a 400 naming the viewport and the limit, before any pixel is decoded."""
    obj = await store(client, to_bytes(make_dataset(rows=8, columns=8)))
    study = f"{ROOT}/studies/{obj.study}"
    started = time.monotonic()
    for url in (
        f"{obj.url}/rendered",
        f"{obj.url}/frames/1/rendered",
        f"{study}/rendered",
        f"{obj.url}/thumbnail",
        f"{study}/thumbnail",
    ):
        response = await client.get(url, params={"viewport": "65500,65500"})
        assert response.status_code == 400, url
        detail = response.json()["detail"]
        assert "viewport" in detail, url
        assert "16777216" in detail, url
    assert time.monotonic() - started < 10  # milliseconds each; generous for a loaded machine
    # at the limit, the image is enlarged to fit (PS3.18 §8.3.5.1.3) and no further
    largest = await client.get(f"{obj.url}/rendered", params={"viewport": "4096,4096"})
    assert largest.status_code == 200
    assert Image.open(io.BytesIO(largest.content)).size == (4096, 4096)


async def test_output_limits_follow_the_settings(database_url: str, tmp_path: Path) -> None:
    """``render.max_output_pixels`` bounds viewports (400 beyond it, thumbnails too), and
    ``render.max_animation_pixels`` the frames of an animated GIF."""
    limits = RenderSettings(max_output_pixels=64 * 64, max_animation_pixels=3 * 64 * 32)
    settings = make_settings(database_url, tmp_path / "data", render=limits)
    async with app_client(settings) as (_services, client):
        obj = await store(client, to_bytes(make_dataset(rows=16, columns=32, frames=4)))
        fits = await client.get(f"{obj.url}/frames/1/rendered", params={"viewport": "64,64"})
        assert fits.status_code == 200
        assert Image.open(io.BytesIO(fits.content)).size == (64, 32)
        for url in (f"{obj.url}/frames/1/rendered", f"{obj.url}/thumbnail"):
            refused = await client.get(url, params={"viewport": "65,64"})
            assert refused.status_code == 400, url
            assert "viewport: 65 x 64 is 4160 pixels" in refused.json()["detail"]
        gif = {"Accept": "image/gif"}
        window = {"window": "1024,2048,linear"}
        # 4 frames of 16 x 32 fit; enlarged to 64 x 32, only 3 do
        for viewport, size, frames in ((None, (32, 16), 4), ("64,64", (64, 32), 3)):
            params = window if viewport is None else {**window, "viewport": viewport}
            response = await client.get(f"{obj.url}/rendered", params=params, headers=gif)
            assert response.status_code == 200
            with Image.open(io.BytesIO(response.content)) as image:
                assert (image.size, getattr(image, "n_frames", 1)) == (size, frames), viewport
