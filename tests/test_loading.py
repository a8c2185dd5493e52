"""Loading from bytes: formats, DICOM handling and typed errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.errors import CorruptImageError, EmptyFileError, ImageTooLargeError, UnsupportedFileError
from core.io.loading import load_image, sniff_format
from tests.helpers import bomb_png, data_path, dicom_bytes, encode, png_bytes, synthetic_chest


def test_grey_png_loads_as_unit_float():
    image = load_image(png_bytes(synthetic_chest()), "x.png")
    assert image.frames.shape == (1, 224, 224)
    assert image.frames.dtype == np.float32
    assert image.frames.min() >= 0.0 and image.frames.max() <= 1.0
    assert image.source_format == "png" and not image.is_colour


def test_grey_content_saved_as_rgb_jpeg_becomes_one_channel():
    grey = synthetic_chest()
    image = load_image(encode(np.stack([grey] * 3, axis=-1), "JPEG", quality=95), "x.jpeg")
    assert image.frames.shape == (1, 224, 224)


def test_the_fast_channel_mean_is_numpys_mean_bit_for_bit():
    from core.io.loading import _channel_mean

    rng = np.random.default_rng(0)
    for shape in [(1, 1, 3), (7, 5, 3), (224, 224, 3), (301, 97, 3)]:
        rgb = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(_channel_mean(rgb), rgb.mean(axis=-1, dtype=np.float32))
    near_grey = np.clip(synthetic_chest()[..., None].astype(np.int16) + rng.integers(-1, 2, (224, 224, 3)), 0, 255)
    image = load_image(encode(near_grey.astype(np.uint8), "PNG"), "near-grey.png")
    np.testing.assert_array_equal(image.frames[0], near_grey.astype(np.uint8).mean(axis=-1, dtype=np.float32) / 255)


def test_colour_image_keeps_three_channels():
    rgb = np.zeros((64, 64, 3), np.uint8)
    rgb[..., 0] = 200
    image = load_image(png_bytes(rgb), "red.png")
    assert image.is_colour and image.frames.shape == (1, 64, 64, 3)


def test_sixteen_bit_png_keeps_its_precision():
    ramp = np.tile(np.linspace(0, 4095, 256).astype(np.uint16), (64, 1))
    image = load_image(png_bytes(ramp), "ramp16.png")
    assert len(np.unique(image.frames)) > 255  # not squashed to 8 bits
    assert image.frames.min() == 0.0 and image.frames.max() == 1.0


def test_multi_page_tiff_gives_frames():
    pages = [Image.fromarray(np.full((32, 32), value, np.uint8)) for value in (10, 128, 250)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    image = load_image(buffer.getvalue(), "stack.tif")
    assert image.n_frames == 3
    assert image.frame(2).mean() > image.frame(0).mean()


def test_format_is_read_from_content_not_extension():
    data = encode(synthetic_chest(), "JPEG")
    assert sniff_format(data) == "jpeg"
    assert load_image(data, "misnamed.png").source_format == "jpeg"


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", EmptyFileError),
        (b"patient notes, not an image\n" * 10, UnsupportedFileError),
        (png_bytes(synthetic_chest())[:300], CorruptImageError),
        (encode(synthetic_chest(), "JPEG")[:400], CorruptImageError),
        (bomb_png(), ImageTooLargeError),
        (encode(np.zeros((1, 1), np.uint8), "PNG"), UnsupportedFileError),
        (encode(np.zeros((32, 32), np.uint8), "GIF"), UnsupportedFileError),
        (encode(np.zeros((32, 32, 3), np.uint8), "BMP"), UnsupportedFileError),
    ],
    ids=["empty", "text", "truncated-png", "truncated-jpeg", "bomb", "1x1", "gif", "bmp"],
)
def test_bad_input_raises_a_typed_error_with_a_message(data, error):
    with pytest.raises(error) as raised:
        load_image(data, "upload.png")
    assert len(str(raised.value)) > 10 and raised.value.hint


def test_generated_dicom_monochrome1_is_inverted_and_patient_fields_kept_apart():
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))
    plain = load_image(dicom_bytes(ramp, "MONOCHROME2"), "a.dcm")
    inverted = load_image(dicom_bytes(ramp, "MONOCHROME1"), "b.dcm")
    assert plain.frame()[0, -1] > plain.frame()[0, 0]
    assert inverted.frame()[0, -1] < inverted.frame()[0, 0]
    assert plain.patient["PatientName"] == "Doe^Jane"
    assert "PatientName" not in plain.technical and "Jane" not in repr(plain)
    assert plain.pixel_spacing_mm == (0.2, 0.2)


def test_dicom_window_is_applied():
    ramp = np.tile(np.linspace(0, 4095, 64).astype(np.uint16), (64, 1))
    windowed = load_image(dicom_bytes(ramp, window=(1000, 400)), "w.dcm").frame()
    assert windowed[0, 0] == 0.0 and windowed[0, -1] == 1.0
    assert (windowed[0] == 1.0).sum() > 40  # most of the ramp is above the window


def test_dicom_without_pixel_data_is_a_clear_error():
    with pytest.raises(CorruptImageError, match="no pixel data"):
        load_image(dicom_bytes(np.zeros((8, 8)), with_pixels=False), "report.dcm")


def test_real_monochrome1_chest_dicom_is_inverted():
    import pydicom

    path = data_path("dicom", "RG1_UNCR.dcm")
    image = load_image(path.read_bytes(), path.name)
    raw = pydicom.dcmread(path).pixel_array.astype(float)
    assert image.frames.shape == (1, 1955, 1841)
    assert np.corrcoef(raw[::8, ::8].ravel(), image.frame()[::8, ::8].ravel())[0, 1] < -0.5
    assert image.modality == "CR" and image.body_part == "CHEST"
    assert image.patient  # present, but kept apart


def test_real_jpeg2000_dicom_matches_uncompressed():
    lossless = load_image(data_path("dicom", "RG1_J2KR.dcm").read_bytes(), "RG1_J2KR.dcm")
    plain = load_image(data_path("dicom", "RG1_UNCR.dcm").read_bytes(), "RG1_UNCR.dcm")
    np.testing.assert_allclose(lossless.frame(), plain.frame(), atol=1e-6)


def test_real_sixteen_bit_mr_keeps_more_than_256_levels():
    image = load_image(data_path("dicom", "MR2_UNCR.dcm").read_bytes(), "MR2_UNCR.dcm")
    assert image.modality == "MR"
    assert len(np.unique(image.frame())) > 256


def test_real_multiframe_dicom():
    image = load_image(data_path("dicom", "emri_small.dcm").read_bytes(), "emri_small.dcm")
    assert image.n_frames == 10 and image.shape == (64, 64)


def test_real_truncated_dicom_is_corrupt():
    path = data_path("dicom", "emri_small_jpeg_2k_lossless_too_short.dcm")
    with pytest.raises(CorruptImageError):
        load_image(path.read_bytes(), path.name)


def _package_dicom(name: str) -> bytes:
    """A DICOM test file shipped inside the installed pydicom / pydicom-data packages (no download)."""
    from core.io.samples import _package_dicom_dirs

    for folder in _package_dicom_dirs():
        if (folder / name).is_file():
            return (folder / name).read_bytes()
    pytest.skip(f"{name} is not in the installed pydicom packages")


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "emri_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"])
def test_compressed_package_dicoms_decode(name):
    image = load_image(_package_dicom(name), name)
    assert image.modality == "MR" and image.shape == (64, 64)


def test_jpeg_ls_matches_uncompressed_multiframe():
    lossless = load_image(_package_dicom("emri_small_jpeg_ls_lossless.dcm"), "a.dcm")
    plain = load_image(_package_dicom("emri_small.dcm"), "b.dcm")
    assert lossless.n_frames == plain.n_frames == 10
    np.testing.assert_allclose(lossless.frames, plain.frames, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "error", "words"),
    [
        ("reportsi.dcm", CorruptImageError, "no pixel data"),
        ("rtplan.dcm", CorruptImageError, "no pixel data"),
        ("MR_truncated.dcm", CorruptImageError, "damaged or truncated"),
    ],
)
def test_package_dicoms_that_hold_no_usable_image(name, error, words):
    with pytest.raises(error, match=words):
        load_image(_package_dicom(name), name)


def test_voi_lut_sequence_is_applied():
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    data = _package_dicom("vlut_04.dcm")
    ds = pydicom.dcmread(io.BytesIO(data))
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds) / (
        2 ** int(ds.VOILUTSequence[0].LUTDescriptor[2]) - 1
    )
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        expected = 1 - expected
    np.testing.assert_allclose(load_image(data, "vlut_04.dcm").frame(), expected, atol=1e-5)


def test_samples_come_from_installed_packages_or_a_folder(tmp_path, monkeypatch):
    from core.io.samples import list_samples

    monkeypatch.delenv("SCANSIGHT_SAMPLES", raising=False)
    packaged = list_samples()
    assert packaged and all(sample.path.is_file() for sample in packaged)
    (tmp_path / "x.png").write_bytes(png_bytes(synthetic_chest(32)))
    (tmp_path / "notes.txt").write_text("not a sample")
    assert [sample.label for sample in list_samples(tmp_path)] == ["x.png"]


def test_window_maps_values_above_it_to_white_and_below_to_black():
    bright = np.full((32, 32), 3000, np.uint16)
    assert load_image(dicom_bytes(bright, window=(1000, 400)), "w.dcm").frame().min() == 1.0
    dark = np.full((32, 32), 100, np.uint16)
    assert load_image(dicom_bytes(dark, window=(1000, 400)), "w.dcm").frame().max() == 0.0


def test_float_tiff_with_nan_and_inf_stays_finite():
    values = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    buffer = io.BytesIO()
    Image.fromarray(values, mode="F").save(buffer, format="TIFF")
    frame = load_image(buffer.getvalue(), "float.tif").frame()
    assert np.isfinite(frame).all() and frame.min() >= 0.0 and frame.max() <= 1.0
    assert frame[32, 32] == pytest.approx(values[32, 32], abs=0.01)  # an inf pixel does not black out the rest


def test_later_tiff_pages_of_another_size_are_skipped_not_decoded():
    small = Image.fromarray(np.zeros((64, 64), np.uint8))
    huge = Image.new("L", (8000, 7000))
    buffer = io.BytesIO()
    small.save(buffer, format="TIFF", save_all=True, append_images=[huge, huge], compression="tiff_deflate")
    assert load_image(buffer.getvalue(), "stack.tif").frames.shape == (1, 64, 64)


def test_a_first_tiff_page_too_large_is_refused_before_decoding():
    huge = Image.new("L", (8000, 7000))
    buffer = io.BytesIO()
    huge.save(buffer, format="TIFF", compression="tiff_deflate")
    with pytest.raises(ImageTooLargeError, match="megapixels"):
        load_image(buffer.getvalue(), "huge.tif")


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.float32])
def test_float_tiffs_load(dtype):
    import tifffile

    values = np.linspace(-1, 3, 64 * 64).reshape(64, 64).astype(dtype)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values)
    frame = load_image(buffer.getvalue(), "float.tif").frame()
    assert frame.shape == (64, 64) and frame.min() == 0.0 and frame.max() == pytest.approx(1.0)


def test_a_five_channel_tiff_loads_its_first_three_channels_as_colour():
    import tifffile

    values = (np.random.default_rng(0).random((64, 64, 5)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, values, planarconfig="contig")
    image = load_image(buffer.getvalue(), "five.tif")
    assert image.frames.shape == (1, 64, 64, 3)


def test_invalid_number_of_frames_is_a_corrupt_file():
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((32, 32), np.uint16))))
    ds.NumberOfFrames = "99"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    element = b"\x28\x00\x08\x00IS\x02\x0099"  # (0028,0008) IS, length 2, "99"
    data = buffer.getvalue()
    assert element in data
    with pytest.raises(CorruptImageError):
        load_image(data.replace(element, element[:-2] + b"ab"), "frames.dcm")


def test_deflated_dicom_is_refused():
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((32, 32), np.uint16))))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(UnsupportedFileError, match="Deflated"):
        load_image(buffer.getvalue(), "deflated.dcm")


def test_no_file_name_is_fine():
    assert load_image(png_bytes(synthetic_chest(32)), None).source_format == "png"


def test_pixel_spacing_reads_as_millimetres_not_as_a_float_repr():
    import pydicom

    dataset = pydicom.dcmread(io.BytesIO(dicom_bytes(np.zeros((32, 32), np.uint16))))
    dataset.PixelSpacing = [0.1 + 0.043, 0.143]  # 0.14300000000000002 as a float
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    image = load_image(buffer.getvalue(), "spacing.dcm")
    assert image.technical["PixelSpacing"] == "0.143 x 0.143 mm (row x column)"


@pytest.mark.parametrize(
    ("name", "identifying"),
    [
        ("0a8d486f-1aa6-4fcf-b7be-4bf04fc8628b.dcm", True),  # RSNA: the PatientID
        ("TCGA_CS_4941_19960909_1.jpg", True),  # a study date
        ("1.2.840.113619.2.55.3.604688.dcm", True),  # a DICOM UID
        ("scan_2021-03-04.png", True),
        ("a3f9c02b7e1d44aa.png", True),
        ("chest.png", False),
        ("person1_virus_6.jpeg", False),
        ("IM-0115-0001.jpeg", False),
    ],
)
def test_identifier_like_file_names_are_recognised(name, identifying):
    from core.io.privacy import looks_identifying, shown_name

    assert looks_identifying(name) is identifying
    assert (shown_name(name, 3) == "upload 3") is identifying


def test_a_file_name_holding_a_hidden_patient_field_is_not_shown():
    from core.io.privacy import shown_name

    assert shown_name("smith_chest.png", 1, hidden_values=["SMITH^JOHN", "smith"]) == "upload 1"
    assert shown_name("chest.png", 1, hidden_values=["SMITH^JOHN"]) == "chest.png"


def test_decoder_words_are_shortened_at_a_word_boundary_never_mid_sentence():
    from core.io.image import decoder_message

    long = ValueError("The decoder stopped because " + "the data ended early " * 12)
    text = decoder_message(long)
    assert text.endswith(" …") and len(text) <= 122
    words = text[:-2].split()
    assert words == str(long).split()[: len(words)]  # whole words only
    assert decoder_message(ValueError("short message")) == "short message"


def test_error_messages_carry_no_object_addresses():
    """A truncated PNG once reported "<_io.BytesIO object at 0x7f…>": different every run, meaningless to a reader."""
    import numpy as np

    from core.errors import ScanSightError
    from core.io.loading import load_image
    from tests.helpers import png_bytes

    with pytest.raises(ScanSightError) as caught:
        load_image(png_bytes(np.zeros((64, 64), np.uint8))[:40], "cut.png")
    assert " at 0x" not in str(caught.value) and "truncated" in str(caught.value)
