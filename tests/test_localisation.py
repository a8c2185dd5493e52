"""Heatmap-vs-box checks: pointing game and IoU by hand, weight randomisation, the real RSNA labels."""

from __future__ import annotations

import numpy as np
import pytest

from core.checks.localisation import Box, box_mask, cam_box_iou, load_boxes, pointing_game, randomised, rank_correlation
from tests.helpers import data_path


def test_pointing_game_and_iou_by_hand():
    cam = np.zeros((100, 100), np.float32)
    cam[10:30, 10:30] = 1.0
    inside, outside = [Box(5, 5, 30, 30)], [Box(60, 60, 20, 20)]
    assert pointing_game(cam, inside) and not pointing_game(cam, outside)
    # map region 20x20 = 400 inside a 30x30 = 900 box: IoU = 400 / 900
    assert cam_box_iou(cam, inside) == pytest.approx(400 / 900)
    assert cam_box_iou(cam, outside) == 0.0
    assert box_mask((100, 100), inside + outside).sum() == 900 + 400


def test_rank_correlation_tells_same_from_different():
    rng = np.random.default_rng(0)
    a = rng.random((80, 80)).astype(np.float32)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert abs(rank_correlation(a, rng.random((80, 80)).astype(np.float32))) < 0.2


def test_randomised_model_has_the_same_shape_but_other_weights(tiny_model):
    shuffled = randomised(tiny_model)
    before, after = tiny_model.keras_model.get_weights(), shuffled.keras_model.get_weights()
    assert [w.shape for w in before] == [w.shape for w in after]
    assert any(not np.array_equal(b, a) for b, a in zip(before, after, strict=True))


def test_real_rsna_labels():
    boxes = load_boxes(data_path("rsna_sample", "labels.csv"))
    assert len(boxes) == 16
    assert sum(1 for b in boxes.values() if b) == 5 and sum(len(b) for b in boxes.values()) == 10
