"""The rendering pipeline end to end (PS3.18 §8.3.5.1, PS3.4 Annex N.2): a PS3.10 file and its
:class:`~app.dicom.render.parameters.RenderParams` to the bytes of one consumer image."""

from PIL import Image
from pydicom import Dataset
from pydicom.uid import UID

from app.dicom.decoding import DEFAULT_LIMITS as DEFAULT_DECODE_LIMITS
from app.dicom.decoding import DecodeLimits, PixelShape
from app.dicom.render.annotation import annotate
from app.dicom.render.dataset import read_dataset
from app.dicom.render.encoding import encode, with_icc_profile
from app.dicom.render.geometry import crop_and_scale
from app.dicom.render.parameters import DEFAULT_LIMITS, OutputLimits, RenderParams
from app.dicom.render.pixels import to_image


def render(
    raw: bytes,
    params: RenderParams,
    ds: Dataset | None = None,
    limits: OutputLimits = DEFAULT_LIMITS,
    decode: DecodeLimits = DEFAULT_DECODE_LIMITS,
) -> bytes:
    """Render the frames ``params.frames`` of a PS3.10 file as ``params.media_type``.

    Several frames make one animated GIF (only ``image/gif`` takes several); it ends before a
    frame that would take it beyond ``limits.animation_pixels`` (an instance's frames are all
    the same size), so frames left out are never decoded. Raises
    :class:`~app.dicom.render.parameters.RenderParameterError` for an impossible frame number, and
    :class:`~app.errors.DecodedSizeTooLarge` before decoding a frame beyond ``decode``.
    """
    ds = ds if ds is not None else read_dataset(raw)
    check_renderable(ds, decode)
    images: list[Image.Image] = []
    spent = 0
    for number in params.frames:
        image = to_image(ds, number, params.window)
        image = crop_and_scale(image, params, limits.pixels)
        if params.annotation:
            image = annotate(image, ds, params, number)
        images.append(image)
        spent += image.size[0] * image.size[1]
        if spent + image.size[0] * image.size[1] > limits.animation_pixels:
            break
    images[0] = with_icc_profile(ds, images[0], params.iccprofile)
    frame_time = float(ds.get("FrameTime", 100) or 100)
    return encode(images, params, frame_time=frame_time)


def check_renderable(ds: Dataset, limits: DecodeLimits) -> None:
    """A frame of ``ds`` decoded and rendered stays within ``limits`` (issue 19): its Image Pixel
    attributes, and the codestream each fragment of encapsulated pixel data starts."""
    shape = PixelShape.of_dataset(ds)
    if shape is None:
        return
    limits.check_render(shape)
    if UID(ds.file_meta.TransferSyntaxUID).is_encapsulated and "PixelData" in ds:
        limits.check_fragments(ds.PixelData)
