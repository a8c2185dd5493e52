"""Fuzzing with hypothesis: mutated bytes of valid files never escape as anything but a typed error."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ScanSightError
from core.io.loading import load_image
from tests.helpers import encode, png_bytes, synthetic_chest


def _dicom() -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.Modality, ds.Rows, ds.Columns = "CR", 32, 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.PixelData = (np.arange(32 * 32, dtype=np.uint16) * 4).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _tiff() -> bytes:
    return encode(synthetic_chest(48), "TIFF")


def _multipage_float_tiff() -> bytes:
    from PIL import Image

    pages = [Image.fromarray(synthetic_chest(32).astype(np.float32) / 255, mode="F") for _ in range(3)]
    buffer = io.BytesIO()
    pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
    return buffer.getvalue()


def _multiframe_dicom() -> bytes:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_dicom()))
    ds.NumberOfFrames = 4
    ds.Rows = ds.Columns = 16
    ds.PixelData = (np.arange(4 * 16 * 16, dtype=np.uint16) * 3).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


SEEDS = {
    "png": png_bytes(synthetic_chest(48)),
    "jpeg": encode(synthetic_chest(48), "JPEG"),
    "tiff": _tiff(),
    "dicom": _dicom(),
    "tiff-float-pages": _multipage_float_tiff(),
    "dicom-frames": _multiframe_dicom(),
}


@st.composite
def mutated(draw):
    kind = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[kind])
    action = draw(st.sampled_from(["flip", "truncate", "insert", "splice"]))
    if action == "flip":
        for _ in range(draw(st.integers(1, 16))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] = draw(st.integers(0, 255))
    elif action == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif action == "insert":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=64))
    else:
        other = SEEDS[draw(st.sampled_from(sorted(SEEDS)))]
        cut = draw(st.integers(0, min(len(data), len(other))))
        data = data[:cut] + other[cut:]
    return kind, bytes(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(mutated())
def test_mutated_files_load_or_raise_a_typed_error(case):
    kind, data = case
    try:
        image = load_image(data, f"upload.{kind}")
    except ScanSightError as error:
        assert str(error)
        return
    assert image.frames.dtype == np.float32
    assert np.isfinite(image.frames).all()
    assert image.frames.min() >= 0.0 and image.frames.max() <= 1.0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)
@given(mutated())
def test_mutated_files_through_the_whole_predict_path(tiny_model, gate_model, case):
    from core.explain.gradcam import heatmap
    from core.explain.overlay import overlay
    from core.tasks.gate import check_image

    kind, data = case
    try:
        image = load_image(data, f"upload.{kind}")
    except ScanSightError:
        return
    if gate_model is not None:
        verdict = check_image(gate_model, image)
        assert abs(sum(verdict.probabilities.values()) - 1) < 1e-5
    prediction = tiny_model.predict(image)
    assert abs(sum(prediction.probabilities.values()) - 1) < 1e-5
    cam = heatmap(tiny_model, image)
    assert overlay(image.frame(), cam).dtype == np.uint8
