"""The chest classifiers' configuration of `core.training.loops.fit_classifier`
(``python -m core.train pneumonia --data ... --out weights/``).

Validation is split from the training folder by patient; the decision threshold (Youden's J) and
the calibration temperature (validation NLL) are chosen on validation only. The test set is never
read here.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.data.chest import (
    Sample,
    covid_holdout,
    list_covid,
    list_labelled,
    list_pneumonia_types,
    load_arrays,
    split_by_patient,
)
from core.models.cards import InputSpec, ModelCard
from core.models.networks import build_classifier
from core.models.scan_model import ScanModel
from core.training.loops import (
    FitSettings,
    balanced_class_weights,
    calibrate,
    export_with_card,
    fit_classifier,
    history_fields,
)
from core.transforms.augment import augmented_batches

VALIDATION_FRACTION = 0.15  # of the patients of the training folder (after a task's held-out test part)


@dataclass
class ClassifierTask:
    """How to train one image classifier."""

    name: str
    title: str
    modality: str
    classes: list[str]
    positive_class: str | None
    list_samples: Callable[[Path], list[Sample]]
    description: str = ""
    limits: list[str] = field(default_factory=list)
    source: str = "Kermany et al. 2018 paediatric chest X-rays (chest_xray/train)"
    test_note: str = "official 624-image test set (chest_xray/test), never used for training, tuning or the threshold"
    holdout: Callable[[list[Sample], int], tuple[list[Sample], list[Sample]]] | None = None
    split_note: str = "validation = {fraction:.0%} of patients (stratified, seed {seed}); no patient in both"


def _covid_development(samples: list[Sample], seed: int) -> tuple[list[Sample], list[Sample]]:
    return covid_holdout(samples)


CLASSIFIER_TASKS: dict[str, ClassifierTask] = {
    "pneumonia": ClassifierTask(
        name="pneumonia",
        title="Pneumonia vs normal (paediatric chest X-ray)",
        modality="chest-xray",
        classes=["NORMAL", "PNEUMONIA"],
        positive_class="PNEUMONIA",
        list_samples=lambda root: list_labelled(root, ["NORMAL", "PNEUMONIA"]),
        description="Frontal chest X-ray -> probability of pneumonia (bacterial or viral).",
        limits=[
            "Trained on paediatric (age 1-5) AP chest X-rays from one hospital in Guangzhou; adult images, "
            "lateral views and other hospitals are outside what it has seen.",
            "A teaching and demo tool, not a diagnosis.",
        ],
    ),
    "pneumonia-type": ClassifierTask(
        name="pneumonia-type",
        title="Normal / bacterial / viral pneumonia (paediatric chest X-ray)",
        modality="chest-xray",
        classes=["NORMAL", "BACTERIAL", "VIRAL"],
        positive_class=None,
        list_samples=list_pneumonia_types,
        description="Frontal chest X-ray -> normal, bacterial or viral pneumonia.",
        limits=[
            "Bacterial and viral pneumonia look alike on X-ray; expect confusion between them.",
            "Trained on paediatric (age 1-5) AP chest X-rays from one hospital in Guangzhou.",
            "A teaching and demo tool, not a diagnosis.",
        ],
    ),
    "covid": ClassifierTask(
        name="covid",
        title="COVID-19 vs normal (adult chest X-ray)",
        modality="chest-xray",
        classes=["NORMAL", "COVID"],
        positive_class="COVID",
        list_samples=list_covid,
        description="Frontal adult chest X-ray -> probability of COVID-19 (against normal only).",
        limits=[
            "Only COVID-19 and normal adult images were seen: other pneumonias, other findings and children are "
            "outside what it knows.",
            "The COVID-19 Radiography Database pools images from many sources; positives and negatives come from "
            "different hospitals, so part of what it learned may be the source, not the disease.",
            "A teaching and demo tool, not a diagnosis.",
        ],
        source="COVID-19 Radiography Database, adult chest X-rays (covid_radiography, 2,000 COVID + 2,000 normal)",
        test_note="a fixed 20% of the images held out by seed 0 (stratified; `python -m core.evaluate covid "
        "--split test`), never used for training, tuning or the threshold",
        holdout=_covid_development,
        split_note="test = 20% held out (seed 0); validation = {fraction:.0%} of the rest (seed {seed}); the set has "
        "no patient ids, so a patient with several images could fall in two parts",
    ),
}


def chest_preprocessing(size: int) -> list[dict[str, Any]]:
    return [{"name": "grey"}, {"name": "resize", "size": [size, size]}, {"name": "normalise"}]


CLASSIFIER_ARCHITECTURES = ("cnn", "lite0-imagenet", "lite0-scratch")


def development_split(
    task_name: str,
    data_dir: Path,
    split_seed: int,
    validation_fraction: float = VALIDATION_FRACTION,
    seed: int = 0,
    limit: int | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[Sample], list[Sample]]:
    """(train, validation) of a task's training folder, split by patient with `split_seed` after the task's
    held-out test part (if any) is set aside; `limit` draws a subset with `seed` (smoke runs). The same call
    gives the same validation patients to every run, and to an ensemble of runs (`core.training.ensemble`)."""
    task = CLASSIFIER_TASKS[task_name]
    samples = task.list_samples(Path(data_dir))
    if task.holdout is not None:
        samples, held_out = task.holdout(samples, seed)
        log(f"{len(held_out)} images held out as the test part; {len(samples)} left for training and validation")
    if limit:
        rng = np.random.default_rng(seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), size=min(limit, len(samples)), replace=False))]
    train, validation = split_by_patient(samples, validation_fraction, split_seed)
    log(
        f"{task_name}: {len(samples)} images, {len({s.patient for s in samples})} patients -> "
        f"train {len(train)} / validation {len(validation)} images (split by patient, seed {split_seed})"
    )
    return train, validation


def train_classifier(
    task_name: str,
    data_dir: Path,
    out_dir: Path,
    size: int = 160,
    epochs: int = 40,
    batch_size: int = 32,
    patience: int = 8,
    learning_rate: float = 2e-3,
    seed: int = 0,
    validation_fraction: float = VALIDATION_FRACTION,
    widths: Sequence[int] = (16, 32, 64, 128, 192),
    limit: int | None = None,
    init_from: Path | None = None,
    name: str | None = None,
    architecture: str = "cnn",
    log: Callable[[str], None] = print,
    resume: bool = False,
    split_seed: int | None = None,
) -> ModelCard:
    """Train, calibrate and save one classifier; returns its card (saved beside the weights).

    `init_from`: a pretrained backbone (.keras) whose layers, all but the logits, start the network
    (fine-tuning); `name`: the card and file name when it is not the task's (e.g. a variant);
    `architecture`: "cnn" (the compact CNN), "lite0-imagenet" (EfficientNet-Lite0 from the ported ImageNet
    weights) or "lite0-scratch" (the same network from random weights). `split_seed` (default `seed`) draws the
    validation patients, `seed` the rest: runs that differ only in `seed` compare on one split."""
    import keras

    task = CLASSIFIER_TASKS[task_name]
    keras.utils.set_random_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.time()

    split_seed = seed if split_seed is None else split_seed
    train, validation = development_split(task_name, data_dir, split_seed, validation_fraction, seed, limit, log)

    name = name or task.name
    card = ModelCard(
        name=name,
        task=task.name,
        title=task.title,
        modality=task.modality,
        weights=f"{name}.keras",
        classes=list(task.classes),
        positive_class=task.positive_class,
        input=InputSpec(height=size, width=size, channels=1),
        preprocessing=chest_preprocessing(size),
        description=task.description,
        limits=list(task.limits),
    )
    preparer = ScanModel(card, keras_model=None)
    x_train = load_arrays([s.path for s in train], preparer.prepare)
    x_val = load_arrays([s.path for s in validation], preparer.prepare)
    y_train = np.array([s.label for s in train])
    y_val = np.array([s.label for s in validation])

    n_classes = len(task.classes)
    class_weight = balanced_class_weights(y_train, n_classes)
    log(f"class counts (train) {np.bincount(y_train, minlength=n_classes).tolist()}, class weights {class_weight}")

    if architecture not in CLASSIFIER_ARCHITECTURES:
        known = ", ".join(CLASSIFIER_ARCHITECTURES)
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}")
    if architecture.startswith("lite0"):
        from core.models.efficientnet import CHEST_BLOCKS, last_block_name, lite0_classifier

        model = lite0_classifier(size, n_classes, imagenet=architecture == "lite0-imagenet",
                                 name=f"{name.replace('-', '_')}_lite0")  # fmt: skip
        card.cam_layer = last_block_name(CHEST_BLOCKS)
    else:
        model = build_classifier((size, size, 1), n_classes, widths=tuple(widths), name=f"{name.replace('-', '_')}_cnn")
    if init_from is not None:
        copied = copy_backbone(Path(init_from), model)
        log(f"initialised {copied} layers from {init_from} (all but the logits)")
    log(f"model: {model.count_params():,} parameters, input {size}x{size}x1")

    settings = FitSettings(
        epochs, batch_size, learning_rate, patience, seed, out_dir / ".checkpoints" / f"{name}.keras", resume
    )
    steps = int(np.ceil(len(x_train) / batch_size))
    fit = fit_classifier(model, augmented_batches(x_train, y_train, batch_size, seed), steps, x_val, y_val,
                         n_classes, settings, log, class_weight=class_weight)  # fmt: skip
    validation_metrics = calibrate(card, fit.logits, y_val, "the validation split")
    best = fit.best

    origin = f"fine-tuned from {Path(init_from).name}" if init_from else "from scratch"
    card.variant = "fine-tuned" if init_from else "scratch"
    card.architecture = (
        f"compact VGG-style CNN {origin}: stages {list(widths)} (conv + separable conv, BN, ReLU, max-pool), "
        f"global average pooling, dropout 0.3, dense logits; {model.count_params():,} parameters"
    )
    if architecture.startswith("lite0"):
        imagenet = architecture == "lite0-imagenet"
        card.variant = "imagenet" if imagenet else "lite0-scratch"
        card.architecture = (
            f"EfficientNet-Lite0, its first 14 of 16 MBConv blocks (ReLU6, no squeeze-excitation; the last two "
            f"blocks and the 1280 head dropped to stay under 10 MB per file), one grey channel (stem kernels "
            f"summed over RGB), global average pooling, dropout 0.2, dense logits; "
            f"{model.count_params():,} parameters; "
            + (
                "all layers fine-tuned from the ImageNet weights ported by tools/convert_efficientnet_lite0.py"
                if imagenet
                else "random start (the architecture control for the ImageNet start)"
            )
        )
    card.data = {
        "source": task.source,
        "train_dir": str(data_dir),
        "split": task.split_note.format(fraction=validation_fraction, seed=split_seed),
        "split_seed": split_seed,
        "validation_fraction": validation_fraction,
        "n_train": len(train),
        "n_validation": len(validation),
        "n_patients_train": len({s.patient for s in train}),
        "n_patients_validation": len({s.patient for s in validation}),
        "test": task.test_note,
    }
    card.training = history_fields(
        best, settings, started,
        initialisation=(
            "ImageNet (weights/efficientnet-lite0-imagenet.npz)" if architecture == "lite0-imagenet"
            else str(init_from) if init_from else "random (from scratch)"
        ),
        loss="cross-entropy with balanced class weights",
        augmentation="rotation +-11 deg, zoom +-10%, shift +-6%, contrast +-20%",
        early_stopping=f"validation {'AUC' if n_classes == 2 else 'macro-F1'}, patience {patience}"
        if patience is not None else "none (fixed epochs, last weights)",
        command=" ".join(["python -m core.train", *sys.argv[1:]]) if sys.argv[0].endswith("train.py") else "",
    )  # fmt: skip
    card.metrics = {"validation": validation_metrics}
    export_with_card(model, card, out_dir, log)
    log("validation: " + json.dumps({k: v for k, v in validation_metrics.items() if isinstance(v, float)}))
    return card


def copy_backbone(backbone_path: Path, model) -> int:
    """Copy every layer's weights from a saved network into `model` where names and shapes match,
    except the logits; returns how many layers were copied."""
    import keras

    source = keras.models.load_model(backbone_path, compile=False, safe_mode=True)
    copied = 0
    for layer in model.layers:
        if layer.name == "logits" or not layer.weights:
            continue
        try:
            other = source.get_layer(layer.name)
        except ValueError:
            continue
        weights = other.get_weights()
        if [w.shape for w in weights] == [w.shape for w in layer.get_weights()]:
            layer.set_weights(weights)
            copied += 1
    return copied
