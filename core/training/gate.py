"""Training the gate (`python -m core.train gate --data ../shared/data --out weights/`), with its acceptance
threshold chosen on calibration images so that real scans are rarely refused."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.metrics import fit_temperature, multiclass_metrics
from core.data.gate import TEST_NATURAL, TRAIN_NATURAL, build_training_set
from core.models.cards import InputSpec, ModelCard
from core.models.networks import build_classifier
from core.models.scan_model import softmax
from core.tasks.gate import GATE_CLASSES, GATE_SIZE, verdict_from_probabilities
from core.training.loops import FitSettings, export_with_card, fit_classifier, history_fields, shuffled_batches

THRESHOLD_GRID = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)

MAX_CALIBRATION_REJECTION = 0.005


def choose_threshold(probabilities: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """The highest threshold in THRESHOLD_GRID that wrongly rejects at most 0.5% of the medical images of
    the calibration split (half the 1% goal, as a margin); the lowest one when none does.
    Returns (threshold, its false-rejection rate on the calibration split)."""
    medical = labels != GATE_CLASSES.index("other")
    rates = {}
    for threshold in THRESHOLD_GRID:
        kinds = np.array([GATE_CLASSES.index(verdict_from_probabilities(p, threshold).kind) for p in probabilities])
        rates[threshold] = float(np.mean(kinds[medical] != labels[medical]))
    passing = [t for t in THRESHOLD_GRID if rates[t] <= MAX_CALIBRATION_REJECTION]
    chosen = max(passing) if passing else THRESHOLD_GRID[0]
    return chosen, rates[chosen]


def train_gate(
    data_root: Path,
    out_dir: Path,
    per_class: int = 1500,
    epochs: int = 8,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    seed: int = 0,
    log: Callable[[str], None] = print,
    **_: Any,
):
    """Train the gate, fit its temperature on a held-back tenth of the (training-source) images, save it."""
    import keras

    keras.utils.set_random_seed(seed)
    started = time.time()
    x, y = build_training_set(Path(data_root), per_class, seed)
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = len(x) // 10
    x_val, y_val, x_train, y_train = x[order[:n_val]], y[order[:n_val]], x[order[n_val:]], y[order[n_val:]]
    log(f"gate: {len(x_train)} training and {n_val} calibration images, {per_class} per class")
    model = build_classifier((GATE_SIZE, GATE_SIZE, 3), len(GATE_CLASSES), widths=(16, 32, 64, 96), name="gate_cnn")
    settings = FitSettings(epochs, batch_size, learning_rate, None, seed)  # fixed epochs: nothing chosen
    steps = int(np.ceil(len(x_train) / batch_size))
    fit = fit_classifier(model, shuffled_batches(x_train, y_train, batch_size, seed), steps, x_val, y_val,
                         len(GATE_CLASSES), settings, log)  # fmt: skip
    logits = fit.logits
    temperature, before, after = fit_temperature(logits, y_val)
    threshold, calibration_rejection = choose_threshold(softmax(logits, temperature), y_val)
    log(f"acceptance threshold {threshold} (calibration false rejection {calibration_rejection:.4f})")

    card = ModelCard(
        name="gate",
        task="gate",
        title="Out-of-distribution gate: chest X-ray / brain MRI / CT / other",
        modality="any",
        weights="gate.keras",
        classes=list(GATE_CLASSES),
        input=InputSpec(height=GATE_SIZE, width=GATE_SIZE, channels=3),
        preprocessing=[{"name": "resize", "size": [GATE_SIZE, GATE_SIZE]}],
        threshold=threshold,
        threshold_method="an image is accepted as a kind when that kind is the most likely and its probability "
        f"is at least the threshold, otherwise it is 'other'; the threshold is the highest of {list(THRESHOLD_GRID)} "
        f"that wrongly rejects at most {MAX_CALIBRATION_REJECTION:.1%} of the medical images of the calibration "
        f"split, or {THRESHOLD_GRID[0]} when none does (here {threshold}, calibration false rejection "
        f"{calibration_rejection:.2%})",
        temperature=round(temperature, 4),
        calibration_method=f"temperature scaling on a held-back tenth of the training images (NLL {before:.4f} -> "
        f"{after:.4f})",
        description="Runs before every prediction: the app withholds a model's answer when the image is not the "
        "kind that model knows.",
        deployed=False,
        variant="gate",
        limits=[
            "Trained on this project's data sets only: a chest X-ray from a very different device, a brain MRI in "
            "another orientation or an MRI of another body part may be judged wrongly.",
            "Non-medical training images are few in kind (scikit-image samples, faces, generated scenes).",
        ],
    )
    card.architecture = f"compact CNN, 64x64 RGB input, {model.count_params():,} parameters"
    card.data = {
        "source": "chest: chest_xray/train + covid_radiography development part; brain MRI: LGG training "
        "patients (seed 0); CT: covid_ct_seg/train; other: scikit-image samples "
        f"({', '.join(TRAIN_NATURAL)}), the first 100 LFW faces, generated scenes",
        "per_class": per_class,
        "n_other": 2 * per_class,
        "augmentation": "crop-zoom, rotation +-8 deg, brightness and contrast; MRI: 30% FLAIR alone as grey; "
        "other: rotation +-30 deg, channel shuffle and scaling, brightness and contrast; no class weights (each "
        "medical kind per_class images, other twice that)",
        "test": "chest_xray/test, covid test part, LGG test patients, covid_ct_seg/test; other: held-out "
        f"images ({', '.join(TEST_NATURAL)}, scikit-learn samples), the other 100 faces, scenes from another seed",
    }
    probabilities = softmax(logits, temperature)
    card.training = history_fields(fit.best, settings, started)
    card.metrics = {"validation": multiclass_metrics(y_val, probabilities, GATE_CLASSES)}
    export_with_card(model, card, Path(out_dir), log)
    log(f"held-back accuracy {card.metrics['validation']['accuracy']:.4f}")
    return card
