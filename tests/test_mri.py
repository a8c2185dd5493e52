"""Brain MRI: both data layouts, patient split, segmentation helpers, and the committed models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.mri import list_patients, patient_short_id, read_mask, read_slice, resize_mask, split_patients
from core.explain.overlay import mask_overlay, mask_png
from core.tasks.segmentation import mask_area
from tests.helpers import data_path


def make_patient(root: Path, patient: str, layout: str, n_slices: int = 3) -> None:
    folder = root / patient
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(patient))
    for index in range(1, n_slices + 1):
        image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
        mask = np.zeros((64, 64), np.uint8)
        if index == 2:
            mask[20:30, 25:40] = 255
        if layout == "kaggle":
            Image.fromarray(image).save(folder / f"{patient}_{index}.tif")
            Image.fromarray(mask).save(folder / f"{patient}_{index}_mask.tif")
        else:
            Image.fromarray(image).save(folder / f"{patient}_{index}.jpg", quality=95)
            Image.fromarray(mask).save(folder / f"{patient}_{index}_mask.png")


@pytest.mark.parametrize("layout", ["kaggle", "lgg"])
def test_both_layouts_list_patients_slices_and_masks(tmp_path, layout):
    for number in range(5):
        make_patient(tmp_path, f"TCGA_AB_{1000 + number}_20000101", layout, n_slices=12)
    patients = list_patients(tmp_path)
    assert len(patients) == 5
    assert [item.index for item in patients[0].slices] == list(range(1, 13))  # numeric, not text, order
    second = patients[0].slices[1]
    pixels = read_slice(second.image)
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.float32
    mask = read_mask(second.mask, pixels.shape[:2])
    assert mask.sum() == 10 * 15
    assert patient_short_id(patients[0].patient_id) == "TCGA_AB_1000"


def test_patient_split_is_disjoint_and_reproducible(tmp_path):
    for number in range(20):
        make_patient(tmp_path, f"TCGA_AB_{number:04d}_20000101", "lgg", n_slices=1)
    patients = list_patients(tmp_path)
    first = [[p.patient_id for p in part] for part in split_patients(patients, seed=0)]
    again = [[p.patient_id for p in part] for part in split_patients(list(reversed(patients)), seed=0)]
    assert first == again
    train, validation, test = (set(part) for part in first)
    assert len(test) == 4 and len(validation) == 2 and len(train) == 14
    assert not (train & validation) and not (train & test) and not (validation & test)


def test_resize_mask_keeps_it_binary():
    mask = np.zeros((256, 256), bool)
    mask[100:140, 50:90] = True
    small = resize_mask(mask, (128, 128))
    assert small.dtype == bool and small.sum() == 20 * 20


def test_mask_area_in_pixels_and_mm2():
    mask = np.zeros((10, 10), bool)
    mask[2:5, 3:7] = True
    assert mask_area(mask) == (12, None)
    assert mask_area(mask, (0.5, 0.25)) == (12, pytest.approx(1.5))


@pytest.mark.parametrize("style", ["fill", "contour"])
def test_mask_overlay_colours_the_mask(style):
    image = np.zeros((64, 64), np.float32)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    out = mask_overlay(image, mask, "#ff0000", alpha=1.0, style=style)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert out[..., 0].sum() > 0 and out[..., 1].sum() == 0
    assert out[:8, :8].sum() == 0  # away from the mask nothing changes


def test_mask_png_round_trips():
    import io

    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:25] = True
    back = np.asarray(Image.open(io.BytesIO(mask_png(mask))))
    assert back.shape == (20, 30) and set(np.unique(back)) == {0, 255}
    assert (back > 0).sum() == mask.sum()


def test_real_lgg_folder_has_90_patients():
    patients = list_patients(data_path("lgg_mri"))
    assert len(patients) == 90
    assert sum(len(p.slices) for p in patients) == 3153


@pytest.mark.slow
@pytest.mark.parametrize(
    "network", [["--widths", "4,8,8,16"], ["--architecture", "lite0-unet"]], ids=["resunet", "lite0-unet"]
)
def test_mri_train_and_evaluate_clis_end_to_end(tmp_path, network):
    import json

    from core.cli import evaluate, train
    from core.models.cards import ModelCard

    data = tmp_path / "kaggle_3m"
    for number in range(10):
        make_patient(data, f"TCGA_AB_{number:04d}_20000101", "kaggle", n_slices=4)
    out = tmp_path / "weights"
    common = ["--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "4"]
    assert train.main(["mri-segmentation", *common, "--size", "32", *network]) == 0
    card = ModelCard.load(out / "mri-segmentation.json")
    assert len(card.data["test_patients"]) == 2 and 0.2 <= card.mask_threshold <= 0.8
    tumour_args = ["mri-tumour", *common, "--segmentation-card", str(out / "mri-segmentation.json")]
    assert train.main(tumour_args) == 0
    for task, keys in [("mri-segmentation", ("dice_mean", "dice_median", "iou")), ("mri-tumour", ("accuracy", "auc"))]:
        report = tmp_path / f"{task}.json"
        args = [task, "--data", str(data), "--weights", str(out), "--out", str(report), "--split", "test"]
        assert evaluate.main([*args, "--update-card"]) == 0
        result = json.loads(report.read_text())
        assert result["n_patients"] == 2 and all(key in result for key in keys)
        assert ModelCard.load(out / f"{task}.json").metrics["test"]["n_patients"] == 2

    from core.explain.gradcam import heatmap
    from core.models.scan_model import ScanModel

    classifier = ScanModel.load("mri-tumour", out)
    assert ModelCard.load(out / "mri-tumour.json").data["test_patients"] == card.data["test_patients"]
    assert classifier.card.cam_layer == ("block10_add" if "lite0-unet" in network else "last_conv")
    slice_rgb = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    cam = heatmap(classifier, slice_rgb)
    assert cam.shape == (64, 64) and cam.min() >= 0 and cam.max() <= 1
    grey_cam = heatmap(classifier, slice_rgb[..., 1])  # a single grey FLAIR slice works too
    assert grey_cam.shape == (64, 64)
