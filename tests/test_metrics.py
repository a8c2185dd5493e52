"""Metrics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from core.checks.metrics import binary_metrics, dice, fit_temperature, iou, multiclass_metrics, youden_threshold


def test_binary_metrics_by_hand():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    score = np.array([0.1, 0.6, 0.2, 0.9, 0.8, 0.4, 0.7])
    m = binary_metrics(y, score, threshold=0.5)
    # predicted: 0 1 0 1 1 0 1 -> tn 2, fp 1, fn 1, tp 3
    assert m["confusion_matrix"] == [[2, 1], [1, 3]]
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(2 / 3)
    assert m["accuracy"] == pytest.approx(5 / 7)
    # AUC: pairs (pos > neg) = 11 of 12 (0.4 < 0.6 is the one miss)
    assert m["auc"] == pytest.approx(11 / 12)


def test_youden_threshold_separates_a_separable_case():
    y = np.array([0, 0, 0, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    threshold = youden_threshold(y, score)
    assert 0.3 < threshold <= 0.7
    assert binary_metrics(y, score, threshold)["accuracy"] == 1.0


def test_temperature_above_one_for_overconfident_logits():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    # right 75% of the time, but with huge logits
    correct = rng.random(400) < 0.75
    predicted = np.where(correct, y, 1 - y)
    logits = np.stack([np.where(predicted == 0, 8.0, -8.0), np.where(predicted == 1, 8.0, -8.0)], axis=1)
    temperature, before, after = fit_temperature(logits, y)
    assert temperature > 2 and after < before


def test_multiclass_metrics_by_hand():
    y = np.array([0, 1, 2, 2])
    probabilities = np.eye(3)[[0, 1, 1, 2]]
    m = multiclass_metrics(y, probabilities, ["a", "b", "c"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    assert m["per_class"]["c"]["recall"] == 0.5 and m["per_class"]["b"]["precision"] == 0.5
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_dice_and_iou_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 pixels
    b[0, 1:] = True  # 3 pixels, 2 shared
    assert dice(a, b) == pytest.approx(2 * 2 / 6)
    assert iou(a, b) == pytest.approx(2 / 4)
    assert dice(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0
    assert iou(a, np.zeros_like(a)) == 0.0


def test_best_mask_threshold_picks_the_peak_of_the_grid():
    from core.training.fitting import best_mask_threshold

    threshold, score = best_mask_threshold(lambda t: 1 - abs(t - 0.35))
    assert threshold == 0.35 and score == pytest.approx(1.0)


def test_the_threshold_ceiling_equals_a_search_over_every_threshold():
    from core.checks.ceiling import threshold_ceiling

    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(60, int), np.ones(90, int)]
    for shift, meets in ((1.5, False), (4.0, True)):  # overlapping classes, then well separated ones
        score = np.r_[rng.normal(0, 1, 60), rng.normal(shift, 1, 90)]
        ceiling = threshold_ceiling(binary_metrics(y, score, 0.5), min_sensitivity=0.9, min_specificity=0.8)
        found = [binary_metrics(y, score, t) for t in np.r_[np.sort(score), np.inf]]
        assert ceiling["exact"]
        assert ceiling["best_accuracy"] == pytest.approx(max(m["accuracy"] for m in found), abs=1e-4)
        at_spec = max(m["sensitivity"] for m in found if m["specificity"] >= 0.8)
        assert ceiling["best_sensitivity_at_target_specificity"] == pytest.approx(at_spec, abs=1e-4)
        assert ceiling["a_threshold_meets_both"] == any(
            m["sensitivity"] >= 0.9 and m["specificity"] >= 0.8 for m in found
        )
        assert ceiling["a_threshold_meets_both"] is meets


def test_a_sampled_curve_gives_a_lower_bound_and_no_verdict():
    from core.checks.ceiling import ceiling_sentence, threshold_ceiling

    rng = np.random.default_rng(1)
    y = np.r_[np.zeros(300, int), np.ones(300, int)]
    score = np.r_[rng.normal(0, 1, 300), rng.normal(0.5, 1, 300)]  # hundreds of vertices: the curve is sampled
    ceiling = threshold_ceiling(binary_metrics(y, score, 0.5), min_sensitivity=0.99, min_specificity=0.99)
    assert not ceiling["exact"] and ceiling["a_threshold_meets_both"] is None
    assert "at least" in ceiling_sentence(ceiling) and "not known" in ceiling_sentence(ceiling)


def test_every_stored_ceiling_is_the_one_its_cards_test_figures_give():
    from core.checks.ceiling import card_ceiling
    from core.models.cards import list_cards

    stored = {name: card for name, card in list_cards().items() if "test_ceiling" in card.findings}
    assert "pneumonia" in stored, "python -m core.checks.ceiling pneumonia --update-card"
    for name, card in stored.items():
        recorded = card.findings["test_ceiling"]
        targets = (recorded["target_sensitivity"], recorded["target_specificity"])
        assert card_ceiling(card, targets) == recorded, f"rerun: python -m core.checks.ceiling {name} --update-card"


def test_the_readmes_ceiling_figures_are_the_cards():
    from core.checks.ceiling import card_ceiling
    from core.models.cards import list_cards
    from tests.helpers import REPO

    readme = (REPO / "README.md").read_text()
    paragraph = readme[readme.index("A better threshold would not have been enough") :][:900]
    cards = list_cards()
    for name in ("pneumonia", "pneumonia-scratch", "pneumonia-finetuned"):
        ceiling = card_ceiling(cards[name])
        assert f"{ceiling['best_accuracy']:.1%}" in paragraph, name
        assert f"{ceiling['best_sensitivity_at_target_specificity']:.1%}" in paragraph, name
        assert ceiling["a_threshold_meets_both"] is False  # the paragraph says no threshold meets both
