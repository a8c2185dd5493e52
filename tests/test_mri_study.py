"""Brain MRI studies: reading several slices or a zip, order, masks, broken files, mixed patients, volume."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from core.tasks.mri_study import (
    ASSUMED_PIXEL_MM,
    ASSUMED_SLICE_MM,
    StudyError,
    measure_study,
    read_study,
    remove_small_components,
)
from tests.helpers import png_bytes


def slice_png(value: int, size: int = 64) -> bytes:
    image = np.full((size, size, 3), 20, dtype=np.uint8)
    image[20:40, 20:40] = value
    return png_bytes(image)


def mask_png(size: int = 64, box: tuple[int, int, int, int] = (20, 40, 20, 40)) -> bytes:
    mask = np.zeros((size, size), dtype=np.uint8)
    mask[box[0] : box[1], box[2] : box[3]] = 255
    return png_bytes(mask)


def zip_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_slices_are_ordered_by_their_number_and_masks_paired():
    files = [("P_10.png", slice_png(100)), ("P_2.png", slice_png(200)), ("P_2_mask.png", mask_png()),
             ("P_1.png", slice_png(50))]  # fmt: skip
    study = read_study(files)
    assert [s.name for s in study.slices] == ["P_1.png", "P_2.png", "P_10.png"]
    assert study.slices[1].truth is not None and study.slices[1].truth.sum() == 400
    assert study.slices[0].truth is None and not study.mixed_patients


def test_a_zip_study_with_a_broken_file_keeps_the_readable_slices():
    archive = zip_of({"study/P_1.png": slice_png(80), "study/P_2.png": b"\x89PNG\r\n\x1a\n broken",
                      "study/P_3.png": slice_png(90), "study/notes.txt": b"hello"})  # fmt: skip
    study = read_study([("study.zip", archive)])
    assert [s.name for s in study.slices] == ["P_1.png", "P_3.png"]
    assert {name for name, _ in study.skipped} == {"P_2.png", "notes.txt"}
    assert all(why for _, why in study.skipped)


def test_nothing_readable_is_a_typed_error():
    with pytest.raises(StudyError, match="None of the files"):
        read_study([("a.png", b"not an image"), ("b.txt", b"text")])


def test_a_slice_of_another_size_is_skipped_with_the_reason():
    study = read_study([("P_1.png", slice_png(80)), ("P_2.png", slice_png(80, size=80))])
    assert [s.name for s in study.slices] == ["P_1.png"]
    assert "unlike the study's first slice" in study.skipped[0][1]


def test_mixed_patients_get_no_volume_but_every_slice():
    study = read_study([("A_1.png", slice_png(80)), ("B_1.png", slice_png(80))])
    assert study.mixed_patients and len(study.slices) == 2
    result = measure_study(study, np.ones((2, 64, 64), dtype=bool))
    assert result.volume_ml is None and "more than one patient" in result.volume_note
    assert result.areas_pixels == [4096, 4096]


def test_volume_uses_the_stated_assumption_or_the_users_spacing():
    study = read_study([(f"P_{i}.png", slice_png(80)) for i in range(3)])
    masks = np.zeros((3, 64, 64), dtype=bool)
    masks[1, :10, :10] = True  # 100 voxels
    masks[2, :5, :4] = True  # 20 voxels
    assumed = measure_study(study, masks)
    assert assumed.volume_ml == pytest.approx(120 * ASSUMED_PIXEL_MM**2 * ASSUMED_SLICE_MM / 1000)
    assert "assumed" in assumed.spacing_source and assumed.largest_slice == 1
    given = measure_study(study, masks, pixel_mm=0.5, slice_mm=5.0)
    assert given.volume_ml == pytest.approx(120 * 0.25 * 5 / 1000) and "given by the user" in given.spacing_source
    study.slices[0].pixel_spacing_mm = (0.5, 0.5)  # as a DICOM series would carry, without a slice spacing
    mixed = measure_study(study, masks)
    assert mixed.volume_ml == pytest.approx(120 * 0.25 * ASSUMED_SLICE_MM / 1000)
    assert "DICOM PixelSpacing" in mixed.spacing_source and "between slices, assumed" in mixed.spacing_source


def test_dice_against_the_masks_that_came_with_the_study():
    files = [(f"P_{i}.png", slice_png(80)) for i in range(2)] + [(f"P_{i}_mask.png", mask_png()) for i in range(2)]
    study = read_study(files)
    truth = np.stack([s.truth for s in study.slices])
    assert measure_study(study, truth).dice_vs_truth == pytest.approx(1.0)
    assert measure_study(study, np.zeros_like(truth)).dice_vs_truth == pytest.approx(0.0)


def test_small_components_across_slices_are_dropped():
    masks = np.zeros((4, 32, 32), dtype=bool)
    masks[0:3, 5:15, 5:15] = True  # 300 voxels across 3 slices: one component
    masks[3, 28:30, 28:30] = True  # 4 voxels
    kept = remove_small_components(masks, 50)
    assert kept[0:3].sum() == 300 and kept[3].sum() == 0
    assert remove_small_components(masks, 0).sum() == masks.sum()


def mr_slice(instance: int, location: float, patient: str = "PAT-1") -> bytes:
    """A DICOM MR slice made here: spacing in the header, a bright square."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.Modality, ds.BodyPartExamined, ds.PatientID = "MR", "BRAIN", patient
    ds.Rows = ds.Columns = 64
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing, ds.SliceThickness, ds.SpacingBetweenSlices = [0.5, 0.5], 5.0, 6.0
    ds.InstanceNumber, ds.SliceLocation = instance, location
    pixels = np.full((64, 64), 100, dtype=np.uint16)
    pixels[20:40, 20:40] = 2000
    ds.PixelData = pixels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_a_dicom_series_is_ordered_by_position_and_measured_from_its_header():
    files = [("b.dcm", mr_slice(2, -6.0)), ("a.dcm", mr_slice(3, 0.0)), ("c.dcm", mr_slice(1, -12.0))]
    study = read_study(files)
    assert [s.name for s in study.slices] == ["c.dcm", "b.dcm", "a.dcm"] and not study.mixed_patients
    masks = np.zeros((3, 64, 64), dtype=bool)
    masks[:, :10, :10] = True  # 300 voxels of 0.5 x 0.5 x 6 mm (SpacingBetweenSlices wins over SliceThickness)
    result = measure_study(study, masks)
    assert result.volume_ml == pytest.approx(300 * 0.25 * 6.0 / 1000)
    assert "DICOM PixelSpacing" in result.spacing_source and "DICOM slice spacing" in result.spacing_source
    other = read_study([("a.dcm", mr_slice(1, 0.0)), ("b.dcm", mr_slice(2, 6.0, patient="PAT-2"))])
    assert other.mixed_patients
    assert "PAT" not in repr(other)  # only a hash of the patient id is kept
