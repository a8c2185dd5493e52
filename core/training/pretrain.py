"""Pretraining a chest X-ray backbone on all our chest X-rays (ImageNet weights cannot be downloaded).

``python -m core.train chest-backbone --data ../shared/data --out weights/``

The pretext task uses the auxiliary labels every chest image has: which of five groups it comes from
(paediatric normal / bacterial / viral, adult normal / COVID-19). Only the *training* parts of the
downstream tasks are used: the validation patients of `pneumonia` and `pneumonia-type` (seed 0), the
validation and test parts of `covid` and the whole official chest_xray test set are left out, so
fine-tuning can still pick its threshold and be tested on images the backbone never saw. The epoch
count is fixed (no selection on validation); the validation score is only logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.data.chest import (
    Sample,
    covid_split,
    list_labelled,
    list_pneumonia_types,
    load_arrays,
    split_by_patient,
)
from core.models.cards import InputSpec, ModelCard
from core.models.networks import build_classifier
from core.models.scan_model import ScanModel
from core.training.loops import FitSettings, balanced_class_weights, export_with_card, fit_classifier, history_fields

PRETEXT_CLASSES = ["PAEDIATRIC_NORMAL", "PAEDIATRIC_BACTERIAL", "PAEDIATRIC_VIRAL", "ADULT_NORMAL", "ADULT_COVID"]


def pretraining_split(data_root: Path, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """(pretraining images, left-out validation images) with the five pretext labels."""
    chest = Path(data_root) / "chest_xray" / "train"
    covid = Path(data_root) / "covid_radiography"
    typed = list_pneumonia_types(chest)
    held_patients = {s.patient for s in split_by_patient(typed, 0.15, seed)[1]}
    held_patients |= {s.patient for s in split_by_patient(list_labelled(chest, ["NORMAL", "PNEUMONIA"]), 0.15, seed)[1]}
    train = [s for s in typed if s.patient not in held_patients]
    validation = [s for s in typed if s.patient in held_patients]
    development, _test = covid_split(covid)
    covid_train, covid_validation = split_by_patient(development, 0.15, seed)
    shift = lambda samples: [Sample(s.path, s.label + 3, s.patient) for s in samples]  # noqa: E731
    return train + shift(covid_train), validation + shift(covid_validation)


def pretrain_backbone(
    data_root: Path,
    out_dir: Path,
    size: int = 160,
    epochs: int = 8,
    batch_size: int = 32,
    learning_rate: float = 2e-3,
    seed: int = 0,
    widths: Sequence[int] = (16, 32, 64, 128, 192),
    limit: int | None = None,
    patience: int | None = None,
    name: str = "chest-backbone",
    log: Callable[[str], None] = print,
) -> ModelCard:
    """Train the 5-group pretext classifier and save it with a card (not offered in the app)."""
    import keras

    from core.training.classifier import chest_preprocessing
    from core.transforms.augment import augmented_batches

    keras.utils.set_random_seed(seed)
    started = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, validation = pretraining_split(Path(data_root), seed)
    if limit:
        rng = np.random.default_rng(seed)
        train = [train[i] for i in sorted(rng.choice(len(train), size=min(limit, len(train)), replace=False))]
        validation = validation[: max(1, limit // 5)]
    log(f"pretraining on {len(train)} images, {len(validation)} left out for logging only")

    card = ModelCard(
        name=name,
        task="chest-backbone",
        title="Chest X-ray backbone (pretext: image group)",
        modality="chest-xray",
        weights=f"{name}.keras",
        classes=list(PRETEXT_CLASSES),
        input=InputSpec(height=size, width=size, channels=1),
        preprocessing=chest_preprocessing(size),
        description="Pretrained on all our chest X-ray training images to start the chest classifiers.",
        deployed=False,
        variant="backbone",
    )
    preparer = ScanModel(card, keras_model=None)
    x_train = load_arrays([s.path for s in train], preparer.prepare)
    x_val = load_arrays([s.path for s in validation], preparer.prepare)
    y_train = np.array([s.label for s in train])
    y_val = np.array([s.label for s in validation])
    counts = np.bincount(y_train, minlength=len(PRETEXT_CLASSES))
    model = build_classifier((size, size, 1), len(PRETEXT_CLASSES), widths=tuple(widths), name="chest_backbone")
    settings = FitSettings(epochs, batch_size, learning_rate, None, seed)  # fixed epochs: nothing chosen
    steps = int(np.ceil(len(x_train) / batch_size))
    fit = fit_classifier(model, augmented_batches(x_train, y_train, batch_size, seed), steps, x_val, y_val,
                         len(PRETEXT_CLASSES), settings, log,
                         class_weight=balanced_class_weights(y_train, len(PRETEXT_CLASSES)))  # fmt: skip
    history = fit.best.history
    card.architecture = f"the chest CNN (stages {list(widths)}); {model.count_params():,} parameters"
    card.data = {
        "source": "chest_xray/train and covid_radiography, training parts only",
        "split": "left out: validation patients of pneumonia and pneumonia-type (seed 0), covid validation and "
        "test parts, the official chest_xray test set",
        "n_train": len(train),
        "n_left_out": len(validation),
        "class_counts": counts.tolist(),
    }
    card.training = history_fields(fit.best, settings, started, loss="cross-entropy with balanced class weights")
    card.threshold_method = (
        "argmax over the five groups; the app uses P(adult) = P(adult normal) + P(adult COVID) >= 0.5 as its "
        "source check (see core/checks/shortcut.py)"
    )
    card.metrics = {
        "validation": {
            "n": len(validation),
            "macro_f1": history[-1]["val_macro-F1"] if history else None,
            "used_for": "logging only: the epoch count was fixed in advance",
        }
    }
    export_with_card(model, card, out_dir, log)
    return card
