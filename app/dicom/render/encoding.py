"""Encoding: step 8 of the pipeline (REND-01/03/07): JPEG (baseline 8-bit Huffman,
``quality``), PNG, GIF (animated for several frames), with the ICC profile asked for."""

import io
from collections.abc import Sequence
from typing import Any

from PIL import Image, ImageCms
from pydicom import Dataset

from app.dicom.render.parameters import GIF, JPEG, PNG, RenderParameterError, RenderParams


def with_icc_profile(ds: Dataset, image: Image.Image, iccprofile: str | None) -> Image.Image:
    """The image (converted to sRGB when asked) carrying, as its ``icc_profile`` info, the
    profile :func:`encode` embeds (REND-07)."""
    if iccprofile in (None, "no"):
        return image
    source = ds.get("ICCProfile")
    if iccprofile == "yes" and source:
        image.info["icc_profile"] = bytes(source)
        return image
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    if source and image.mode == "RGB":
        converted = ImageCms.profileToProfile(
            image, ImageCms.ImageCmsProfile(io.BytesIO(bytes(source))), srgb
        )
        if converted is not None:
            image = converted
    image.info["icc_profile"] = srgb.tobytes()
    return image


def encode(images: Sequence[Image.Image], params: RenderParams, *, frame_time: float) -> bytes:
    """JPEG (baseline), PNG or GIF bytes; several images make an animated GIF."""
    out = io.BytesIO()
    first = images[0]
    icc = first.info.get("icc_profile")
    profile: dict[str, Any] = {"icc_profile": icc} if icc else {}
    if params.media_type == JPEG:
        first.save(
            out, format="JPEG", progressive=False, quality=params.quality, optimize=False, **profile
        )
    elif params.media_type == PNG:
        first.save(out, format="PNG", compress_level=3, **profile)
    elif params.media_type == GIF:
        if len(images) > 1:
            first.save(
                out,
                format="GIF",
                save_all=True,
                append_images=list(images[1:]),
                duration=max(20, round(frame_time)),
                loop=0,
            )
        else:
            first.save(out, format="GIF")
    else:  # pragma: no cover - callers negotiate only IMAGE_TYPES
        raise RenderParameterError(f"cannot render as {params.media_type}")
    return out.getvalue()
