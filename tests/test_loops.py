"""The two training loops (`core.training.loops`): class weights, best-or-last weights, calibration, export; and
the configurations that had no end-to-end test before (the gate, the chest backbone) run through them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from core.models.cards import InputSpec, ModelCard, sha256_of
from core.models.networks import build_classifier, build_resunet
from core.training.loops import (
    FitSettings,
    balanced_class_weights,
    calibrate,
    export_with_card,
    fit_classifier,
    fit_segmenter,
    shuffled_batches,
)
from tests.helpers import data_path


def test_balanced_class_weights_make_every_class_count_alike():
    labels = np.array([0] * 30 + [1] * 10)
    weights = balanced_class_weights(labels, 2)
    assert weights == {0: pytest.approx(40 / 60), 1: pytest.approx(40 / 20)}
    assert weights[0] * 30 == pytest.approx(weights[1] * 10)
    assert balanced_class_weights(np.array([0, 0]), 3)[2] == pytest.approx(2 / 3)  # an absent class: no division by 0


def _toy_classification(n: int = 64, size: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0.3, 0.05, (n, size, size, 1)).astype(np.float32)
    x[y == 1, 4:12, 4:12] += 0.5  # the positive class has a bright square
    return np.clip(x, 0, 1), y


def test_fit_classifier_keeps_the_best_epoch_or_the_last_and_calibrate_writes_the_card():
    x, y = _toy_classification()
    settings = FitSettings(epochs=3, batch_size=16, learning_rate=5e-3, patience=2, seed=0)
    model = build_classifier((16, 16, 1), 2, widths=(4, 8), name="toy")
    fit = fit_classifier(model, shuffled_batches(x, y, 16, 0), 4, x, y, 2, settings, log=lambda _: None)
    assert len(fit.best.history) == 3 and fit.logits.shape == (64, 2)
    scores = [row["val_AUC"] for row in fit.best.history]
    assert fit.best.epoch == 1 + int(np.argmax(scores))

    fixed = FitSettings(epochs=2, batch_size=16, learning_rate=5e-3, patience=None, seed=0)
    model = build_classifier((16, 16, 1), 2, widths=(4, 8), name="toy_fixed")
    last = fit_classifier(model, shuffled_batches(x, y, 16, 0), 4, x, y, 2, fixed, log=lambda _: None, monitor=False)
    assert last.best.epoch == 2 and last.best.history == []

    card = ModelCard(name="toy", task="toy", title="t", modality="chest-xray", weights="toy.keras", preprocessing=[],
                     classes=["NO", "YES"], positive_class="YES", input=InputSpec(16, 16, 1))  # fmt: skip
    metrics = calibrate(card, fit.logits, y, "the toy validation")
    assert card.temperature > 0 and 0 < card.threshold <= 1
    assert "Youden" in card.threshold_method and "toy validation" in card.calibration_method
    assert {"sensitivity", "specificity", "auc"} <= set(metrics)


def test_export_with_card_writes_weights_and_their_sha256(tmp_path):
    model = build_classifier((16, 16, 1), 2, widths=(4,), name="toy")
    card = ModelCard(name="toy", task="toy", title="t", modality="chest-xray", weights="toy.keras",
                     classes=["NO", "YES"], input=InputSpec(16, 16, 1), preprocessing=[])  # fmt: skip
    path = export_with_card(model, card, tmp_path / "out", log=lambda _: None)
    saved = json.loads((tmp_path / "out" / "toy.json").read_text())
    assert saved["sha256"] == sha256_of(path) == card.sha256


def test_fit_segmenter_chooses_threshold_and_flip_on_validation():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 0.3, (24, 32, 32, 3)).astype(np.float32)
    y = np.zeros((24, 32, 32, 1), np.float32)
    y[:, 8:20, 4:14] = 1.0  # an off-centre target: a flip changes the mask
    x[..., 0] += y[..., 0] * 0.6
    batches = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(8)
    seen: list[float] = []

    def dice_of(probabilities, threshold):
        predicted = probabilities >= threshold
        truth = y[..., 0] > 0.5
        value = float(2 * (predicted & truth).sum() / max(predicted.sum() + truth.sum(), 1))
        seen.append(threshold)
        return value

    settings = FitSettings(epochs=2, batch_size=8, learning_rate=5e-3, patience=5, seed=0)
    model = build_resunet((32, 32, 3), (4, 8, 8), name="toy_seg")
    fit = fit_segmenter(model, batches, 3, x, dice_of, settings, log=lambda _: None, choose_flip=True)
    assert 0.2 <= fit.mask_threshold <= 0.8 and isinstance(fit.test_time_flip, bool)
    assert 0.0 <= fit.validation_dice <= 1.0 and len(fit.best.history) == 2
    assert {0.2, 0.8} <= set(seen)  # the whole threshold grid was tried


def test_an_interrupted_training_resumes_after_its_last_saved_epoch(tmp_path):
    """Stopped during epoch 2, a rerun with `resume` starts at epoch 2 with the saved weights, optimiser state
    (the step count is the cosine schedule's position) and best epoch, and ends with the history of all three
    epochs; a run with other settings refuses the state, and without a state `resume` starts afresh."""
    import keras
    import tensorflow as tf

    from core.training.fitting import StateMismatchError

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 16, 16, 3)).astype(np.float32)
    y = (x[..., :1] > 0.5).astype(np.float32)
    batches = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(4)
    scores = iter([0.5, KeyboardInterrupt])

    def interrupted(probabilities, threshold):
        value = next(scores)
        if value is KeyboardInterrupt:
            raise KeyboardInterrupt
        return value

    def network():
        keras.utils.set_random_seed(0)  # as every trainer does first: the same start
        return build_resunet((16, 16, 3), (2, 4, 4), name="toy")

    checkpoint = tmp_path / ".checkpoints" / "toy.keras"
    settings = FitSettings(epochs=3, batch_size=4, learning_rate=1e-3, patience=5, seed=0, checkpoint=checkpoint)
    with pytest.raises(KeyboardInterrupt):
        fit_segmenter(network(), batches, 2, x, interrupted, settings, log=lambda _: None)
    saved = settings.state().path
    assert saved.exists()
    with np.load(saved) as state:
        first_moment = state["o1"].copy()

    other = FitSettings(**{**settings.__dict__, "resume": True, "learning_rate": 2e-3})
    with pytest.raises(StateMismatchError):
        fit_segmenter(network(), batches, 2, x, lambda p, t: 0.4, other, log=lambda _: None)

    logged: list[str] = []
    model = network()
    resumed = FitSettings(**{**settings.__dict__, "resume": True})
    restored: list[np.ndarray] = []
    original_fit = model.fit

    def fit_and_look(*args, **kwargs):  # the optimiser state as `fit` starts from it
        restored.append(np.asarray(model.optimizer.variables[1].numpy()))
        return original_fit(*args, **kwargs)

    model.fit = fit_and_look
    fit = fit_segmenter(model, batches, 2, x, lambda p, t: 0.4, resumed, log=logged.append)
    assert any("after epoch 1" in line for line in logged)
    np.testing.assert_array_equal(restored[0], first_moment)
    assert [row["epoch"] for row in fit.best.history] == [1, 2, 3]
    assert fit.best.epoch == 1 and fit.best.score == 0.5  # the saved best (0.5) beats the resumed run's 0.4s
    assert int(model.optimizer.iterations.numpy()) == 3 * 2  # the saved step count went on from 2

    fresh: list[str] = []
    elsewhere = FitSettings(**{**resumed.__dict__, "checkpoint": tmp_path / "other" / "toy.keras"})
    fit_segmenter(network(), batches, 2, x, lambda p, t: 0.4, elsewhere, log=fresh.append)
    assert any("nothing to resume" in line for line in fresh)


@pytest.mark.slow
def test_the_gate_and_the_chest_backbone_train_through_the_loop(tmp_path):
    from core.cli import train

    data = data_path()
    for part in ("chest_xray", "covid_radiography", "lgg_mri", "covid_ct_seg"):
        data_path(part)
    out = tmp_path / "weights"
    out.mkdir()
    assert train.main(["gate", "--data", str(data), "--out", str(out), "--epochs", "1", "--limit", "12"]) == 0
    gate = json.loads((out / "gate.json").read_text())
    assert gate["sha256"] == sha256_of(out / "gate.keras") and gate["threshold"] in (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
    assert gate["training"]["selection"].startswith("fixed epoch count")
    args = ["chest-backbone", "--data", str(data), "--out", str(out), "--epochs", "1", "--limit", "40"]
    assert train.main([*args, "--size", "32", "--widths", "4,8"]) == 0
    backbone = json.loads((out / "chest-backbone.json").read_text())
    assert backbone["sha256"] == sha256_of(out / "chest-backbone.keras")
    assert backbone["metrics"]["validation"]["macro_f1"] is not None


def test_every_training_module_uses_the_shared_loops():
    """No module outside the loops compiles, fits or exports a network on its own."""
    root = Path(__file__).resolve().parent.parent / "core"
    # runtime_bench times a few training steps of throwaway networks under each TensorFlow setting: not a model
    allowed = {"training/loops.py", "training/fitting.py", "cli/runtime_bench.py"}
    offenders = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        if str(path.relative_to(root)) not in allowed
        and re.search(r"compile_cosine\(|export_model\(|\b(model|net)\.fit\(|class_weight = \{", path.read_text())
    ]
    assert offenders == []


def test_the_per_slice_dice_loss_weighs_a_missed_small_lesion_as_much_as_a_large_one():
    from core.training.loops import dice_bce_loss, slice_dice_bce_loss

    truth = np.zeros((2, 16, 16, 1), np.float32)
    truth[0, :8, :8] = truth[1, :2, :2] = 1.0
    found = np.where(np.arange(2)[:, None, None, None] == 0, truth * 0.9, 0.0).astype(np.float32)  # the large one
    batch, per_slice = float(dice_bce_loss(truth, found)), float(slice_dice_bce_loss(truth, found))
    assert per_slice > batch + 0.3  # the missed 4-pixel lesion costs half the Dice term, not 1/17 of it
    one = truth[:1] * 0.9
    assert abs(float(dice_bce_loss(truth[:1], one)) - float(slice_dice_bce_loss(truth[:1], one))) < 1e-6
