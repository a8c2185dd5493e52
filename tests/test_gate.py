"""The out-of-distribution gate: its inputs, its verdicts, its non-medical images, and the committed model."""

from __future__ import annotations

import numpy as np
import pytest

from core.data.gate import TEST_NATURAL, TRAIN_NATURAL, other_images, synthetic_scene
from core.io.loading import load_image
from core.models.cards import list_cards
from core.tasks.gate import GATE_CLASSES, GateVerdict, check_image, gate_input, verdict_from_probabilities
from tests.helpers import data_path


@pytest.mark.parametrize("shape", [(50, 70), (300, 200, 1), (20, 20, 2), (64, 64, 3), (40, 90, 4)])
def test_gate_input_is_64x64_rgb_in_unit_range(shape):
    pixels = np.random.default_rng(0).random(shape).astype(np.float32)
    prepared = gate_input(pixels)
    assert prepared.shape == (64, 64, 3) and prepared.dtype == np.float32
    assert prepared.min() >= 0.0 and prepared.max() <= 1.0


def test_generated_scenes_are_valid_images_of_every_kind():
    rng = np.random.default_rng(0)
    scenes = [synthetic_scene(rng) for _ in range(100)]
    assert all(s.dtype == np.float32 and s.min() >= 0 and s.max() <= 1 for s in scenes)
    assert len({s.ndim for s in scenes}) == 2  # grey and colour


def test_training_and_test_negatives_come_from_different_pictures():
    assert not set(TRAIN_NATURAL) & set(TEST_NATURAL)
    train = list(other_images("train", 8, seed=0))
    test = list(other_images("test", 8, seed=0))
    assert len(train) == len(test) == 8


def test_verdicts():
    assert verdict_from_probabilities(np.array([0.9, 0.05, 0.03, 0.02])).kind == "chest-xray"
    assert verdict_from_probabilities(np.array([0.4, 0.35, 0.2, 0.05])).kind == "other"  # not sure: not accepted
    verdict = GateVerdict("brain-mri", dict(zip(GATE_CLASSES, [0.1, 0.8, 0.05, 0.05], strict=True)))
    assert verdict.fits("brain-mri") and not verdict.fits("chest-xray")
    assert "looks like a brain MRI slice" in verdict.reason("chest-xray") and "page" not in verdict.reason("chest-xray")
    other = GateVerdict("other", dict(zip(GATE_CLASSES, [0.1, 0.1, 0.1, 0.7], strict=True)))
    assert "does not look like" in other.reason("chest-xray") and not other.accepted


needs_gate = pytest.mark.skipif("gate" not in list_cards(), reason="no committed gate model in weights/")


@needs_gate
def test_the_gate_rejects_held_out_non_medical_pictures(gate_model):
    kinds = [check_image(gate_model, image).kind for image in other_images("test", 200, seed=7)]
    assert kinds.count("other") / len(kinds) >= 0.9  # 95.8% of 1000 in the card


@needs_gate
@pytest.mark.parametrize(
    "parts, expected",
    [
        (("chest_xray", "test", "NORMAL"), "chest-xray"),
        (("chest_xray", "test", "PNEUMONIA"), "chest-xray"),
        (("covid_ct_seg", "test", "images"), "ct"),
    ],
)
def test_the_gate_accepts_held_out_medical_images(gate_model, parts, expected):
    files = sorted(data_path(*parts).iterdir())[:20]
    kinds = [check_image(gate_model, load_image(f.read_bytes(), f.name)).kind for f in files]
    assert kinds.count(expected) >= 19


@needs_gate
def test_the_gate_on_real_dicom_files(gate_model):
    chest = data_path("dicom", "RG1_UNCR.dcm")
    assert check_image(gate_model, load_image(chest.read_bytes(), chest.name)).kind == "chest-xray"


def test_threshold_is_the_highest_that_keeps_calibration_rejections_under_half_a_percent():
    from core.training.gate import choose_threshold

    confident = np.tile([[0.97, 0.01, 0.01, 0.01]], (400, 1))
    shaky = np.tile([[0.85, 0.05, 0.05, 0.05]], (1, 1))  # 1 of 401 medical images: 0.25% rejected from 0.9
    unsure = np.tile([[0.55, 0.15, 0.15, 0.15]], (10, 1))
    labels = np.zeros(411, dtype=int)
    threshold, rate = choose_threshold(np.concatenate([confident, shaky, unsure]), labels)
    assert threshold == 0.5 and rate == 0.0  # 10 unsure images (2.4%) would be rejected at 0.6 already
    threshold, rate = choose_threshold(np.concatenate([confident, shaky]), labels[:401])
    assert threshold == 0.95 and rate == pytest.approx(1 / 401)


def test_threshold_falls_back_to_the_lowest_and_reports_its_real_rate():
    from core.training.gate import choose_threshold

    probabilities = np.tile([[0.4, 0.3, 0.2, 0.1]], (10, 1))  # all rejected at every threshold
    assert choose_threshold(probabilities, np.zeros(10, dtype=int)) == (0.5, 1.0)


def package_dicom(name: str):
    from core.io.samples import _package_dicom_dirs

    for folder in _package_dicom_dirs():
        for path in folder.rglob(name):
            return path
    pytest.skip(f"{name} is not in the installed pydicom test data")


@needs_gate
def test_the_header_and_the_content_refuse_what_the_model_alone_accepted(gate_model):
    import io

    import pydicom

    from core.io.loading import load_image
    from core.tasks.gate import check_image
    from core.tasks.screening import header_refusal

    shoulder = load_image(package_dicom("MR2_UNCR.dcm").read_bytes(), "MR2_UNCR.dcm")
    verdict = check_image(gate_model, shoulder)
    assert verdict.kind == "other" and verdict.refused_by == "header" and "shoulder" in verdict.why
    assert "DICOM header rules it out" in verdict.reason("brain-mri")
    dataset = pydicom.dcmread(package_dicom("RG1_UNCR.dcm"))
    dataset.PixelData = bytes(len(dataset.PixelData))  # an all-black CR
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    black = load_image(buffer.getvalue(), "black.dcm")
    verdict = check_image(gate_model, black)
    assert verdict.kind == "other" and verdict.refused_by == "content" and "blank" in verdict.why
    assert header_refusal(load_image(package_dicom("RG1_UNCR.dcm").read_bytes(), "x.dcm"), "chest-xray") == ""


@needs_gate
def test_on_pydicoms_test_files_only_the_chest_radiographs_are_accepted(gate_model):
    from core.checks.gate import pydicom_table

    table = pydicom_table(gate_model)
    assert table["n_decoded"] >= 100
    accepted = table["accepted"]
    assert all(row["gate"] == "chest-xray" and row["modality"] == "CR" for row in accepted), accepted
    assert not any(row["modality"] in ("NM", "US", "PT") for row in accepted)


def test_the_content_check_refuses_images_smaller_than_any_models_input():
    from core.tasks.screening import MIN_SCAN_SIDE, content_refusal

    texture = np.random.default_rng(0).random((200, 200)).astype(np.float32)
    assert "25 x 25 pixels" in content_refusal(texture[:25, :25])
    assert "pixels" in content_refusal(texture[: MIN_SCAN_SIDE - 1, :120])
    assert content_refusal(texture[:MIN_SCAN_SIDE, :MIN_SCAN_SIDE]) == ""
