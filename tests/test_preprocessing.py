"""Preprocessing steps: registry, shapes, ranges, and what each step is meant to do."""

from __future__ import annotations

import numpy as np
import pytest

from core.transforms.preprocessing import (
    STEPS,
    Clahe,
    Compose,
    LungCrop,
    Resize,
    UnknownStepError,
    build_pipeline,
    build_step,
)
from tests.helpers import synthetic_chest


@pytest.fixture
def chest() -> np.ndarray:
    return synthetic_chest(256).astype(np.float32) / 255.0


def test_registry_has_the_promised_steps():
    assert {"resize", "normalise", "clahe", "histeq", "gaussian", "median", "unsharp", "lung_crop", "edges"} <= set(
        STEPS
    )


@pytest.mark.parametrize("name", sorted(STEPS))
def test_every_step_keeps_unit_range_and_float32(name, chest):
    out = build_step(name)(chest)
    assert out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    if name not in ("resize", "lung_crop"):
        assert out.shape == chest.shape


@pytest.mark.parametrize("name", ["clahe", "histeq", "median", "gaussian", "unsharp", "edges", "normalise"])
def test_steps_work_per_channel_on_colour(name):
    colour = np.random.default_rng(0).random((48, 40, 3)).astype(np.float32)
    assert build_step(name)(colour).shape == colour.shape


def test_pipeline_round_trips_through_its_spec(chest):
    spec = [{"name": "grey"}, {"name": "resize", "size": [64, 80]}, {"name": "clahe", "clip_limit": 3.0}]
    pipeline = build_pipeline(spec)
    assert build_pipeline(pipeline.spec()).spec() == pipeline.spec()
    assert pipeline(chest).shape == (64, 80)
    assert [label for label, _ in pipeline.intermediates(chest)] == ["Original", "Grey", "Resize", "CLAHE"]


def test_unknown_step_is_a_typed_error():
    with pytest.raises(UnknownStepError, match="Unknown preprocessing step"):
        build_step("sharpen-everything")


def test_clahe_raises_contrast_of_a_flat_low_contrast_image():
    rng = np.random.default_rng(1)
    dull = (0.45 + 0.05 * rng.random((128, 128))).astype(np.float32)
    assert Clahe(clip_limit=4.0)(dull).std() > 2 * dull.std()


def test_resize_shrinks_to_the_requested_size():
    assert Resize((32, 48))(np.zeros((300, 200), np.float32)).shape == (32, 48)


def test_lung_crop_finds_the_lung_fields(chest):
    box = LungCrop().box(chest)
    assert box is not None
    top, bottom, left, right = box
    # the synthetic lungs span x in [0.20, 0.80] and y in [0.23, 0.77] of the image
    assert left < 0.25 * 256 and right > 0.75 * 256 and top < 0.28 * 256 and bottom > 0.72 * 256
    assert (bottom - top) * (right - left) < 0.8 * 256 * 256  # it did crop


def test_lung_crop_leaves_an_image_without_lungs_unchanged():
    flat = np.full((100, 100), 0.5, np.float32)
    assert LungCrop()(flat) is flat


def test_compose_applies_in_order(chest):
    out = Compose([Resize((64, 64)), build_step("histeq")])(chest)
    assert out.shape == (64, 64)


def test_lung_crop_never_keeps_one_lung_and_says_why():
    from tests.helpers import synthetic_chest

    chest = synthetic_chest(224).astype(np.float32) / 255
    one_lung = chest.copy()
    one_lung[:, 112:] = np.where(one_lung[:, 112:] < 0.4, 0.75, one_lung[:, 112:])  # the right lung filled in
    box, reason = LungCrop().find(one_lung)
    assert box is None and ("not two" in reason or "only one" in reason or "same side" in reason)
    assert LungCrop()(one_lung) is one_lung
    box, reason = LungCrop().find(chest)
    assert box is not None and reason == "cropped to both lung fields"


def test_lung_crop_on_real_xrays_keeps_both_lungs_or_declines():
    """On 40 test X-rays: every crop keeps both halves of the chest (its box spans the midline widely)."""
    from core.io.loading import load_image
    from tests.helpers import data_path

    folder = data_path("chest_xray", "test", "NORMAL")
    for path in sorted(folder.glob("*.jpeg"))[:40]:
        grey = load_image(path.read_bytes(), path.name).grey()
        box, _ = LungCrop().find(grey)
        if box is not None:
            _, _, left, right = box
            width = grey.shape[1]
            assert left < 0.4 * width and right > 0.6 * width, path.name
