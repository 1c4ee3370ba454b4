"""Steps 1-5 of the rendering pipeline (app.dicom.render.pixels) on generated datasets: the LUT
branches of REND-02 that the corpus does not exercise."""

import numpy as np
from pydicom import Dataset

from app.dicom.render import PNG, RenderParams, grayscale
from tests.dicom.render.images import png_pixels
from tests.factories import make_dataset, to_bytes


def test_voi_lut_sequence() -> None:
    """No window in the request or the dataset: the VOI LUT Sequence maps the values."""
    ds = make_dataset(rows=4, columns=8)
    item = Dataset()
    first, entries, bits = 10, 16, 12
    item.LUTDescriptor = [entries, first, bits]
    table = np.linspace(0, 4095, entries).astype(np.uint16)
    item.LUTData = table.astype("<u2").tobytes()
    ds.VOILUTSequence = [item]
    x = ds.pixel_array.astype(np.int64)
    mapped = table[np.clip(x - first, 0, entries - 1)].astype(np.float64)
    expected = np.rint(mapped * 255 / 4095).astype(np.uint8)
    assert np.array_equal(png_pixels(to_bytes(ds), RenderParams(PNG)), expected)


def test_modality_lut_sequence_then_min_max() -> None:
    """A Modality LUT Sequence replaces rescale; without VOI the min/max of its output is used."""
    ds = make_dataset(rows=4, columns=8)
    item = Dataset()
    item.LUTDescriptor = [32, 0, 16]
    item.ModalityLUTType = "HU"
    lut = (np.arange(32) ** 2).astype(np.uint16)
    item.LUTData = lut.astype("<u2").tobytes()
    ds.ModalityLUTSequence = [item]
    values = lut[np.clip(ds.pixel_array.astype(np.int64), 0, 31)].astype(np.float64)
    expected = np.rint((values - values.min()) / (values.max() - values.min()) * 255)
    assert np.array_equal(png_pixels(to_bytes(ds), RenderParams(PNG)), expected.astype(np.uint8))


def test_lookup_table_and_float_paths_agree() -> None:
    """Integer frames use a lookup table; the result equals the per-pixel computation."""
    ds = Dataset()
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.RescaleSlope, ds.RescaleIntercept = 0.5, -20
    rng = np.random.default_rng(7)
    pixels = rng.integers(-500, 3000, (32, 32)).astype(np.int16)
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 300, 700, "SIGMOID"
    via_table = grayscale(pixels, ds, None)
    via_floats = grayscale(pixels.astype(np.float64), ds, None)
    assert np.array_equal(via_table, via_floats)
