"""An ensemble of trained classifier runs: the mean of their logits, one flat network for the app.

`average_classifiers` takes runs of one recipe that differ in their seed (same task, input, preprocessing and
validation patients), rebuilds their validation split from the training folder, averages their logits there
(`core.models.networks.merged_classifier`), fits the temperature (and, for two classes, the threshold) on those
same validation patients, and writes one card listing the members' files. The test set is never read here.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ScanSightError
from core.models.cards import ModelCard, member_file, remove_stale_members, validation_key, write_members
from core.models.networks import ENSEMBLE_FEATURES
from core.models.scan_model import ScanModel
from core.training.loops import calibrate, predict_in_batches


class EnsembleError(ScanSightError):
    """Runs that cannot be averaged: another task, input, preprocessing or validation split."""


def _check_same_recipe(cards: Sequence[ModelCard]) -> None:
    if len(cards) < 2:
        raise EnsembleError("an ensemble needs two or more runs")
    first = cards[0]
    same = {
        "task": lambda c: c.task,
        "classes": lambda c: c.classes,
        "input": lambda c: c.input,
        "preprocessing": lambda c: c.preprocessing,
        "validation split": lambda c: (c.data.get("split"), c.data.get("n_validation")),
        "start": lambda c: c.variant,
    }
    for card in cards[1:]:
        for what, of in same.items():
            if of(card) != of(first):
                raise EnsembleError(f"{card.name} differs from {first.name} in its {what}: runs of one recipe only")
    if len({card.training.get("seed") for card in cards}) != len(cards):
        raise EnsembleError("the runs must differ in their seed")


def split_of(card: ModelCard) -> tuple[int, float]:
    """(split seed, validation fraction) that drew a run's validation patients: recorded in its card's data, or
    for older cards read from its split note's validation clause ("validation = 15% of ... seed N")."""
    from core.training.classifier import VALIDATION_FRACTION

    if card.data.get("split_seed") is not None:
        return int(card.data["split_seed"]), float(card.data.get("validation_fraction", VALIDATION_FRACTION))
    found = re.search(r"validation = (\d+)% of [^;]*?seed (\d+)\)", card.data.get("split", ""))
    if found is None:
        raise EnsembleError(f"{card.name}'s card does not say which seed drew its validation split")
    return int(found.group(2)), int(found.group(1)) / 100


def average_classifiers(
    cards: Sequence[ModelCard],
    data_dir: Path,
    out_dir: Path,
    name: str,
    selection: str,
    log: Callable[[str], None] = print,
) -> ModelCard:
    """Write the ensemble of `cards`' networks as model `name` in `out_dir` (NAME.keras, NAME.m1.keras, ... and
    NAME.json) with its validation figures, temperature and threshold; `selection` says why these runs."""
    from core.data.chest import load_arrays
    from core.training.classifier import development_split

    _check_same_recipe(cards)
    first = cards[0]
    split_seed, fraction = split_of(first)
    _, validation = development_split(first.task, data_dir, split_seed, fraction, int(first.training.get("seed", 0)),
                                      log=log)  # fmt: skip
    if len(validation) != first.data.get("n_validation"):
        raise EnsembleError(
            f"{data_dir} gives {len(validation)} validation images, the runs had {first.data.get('n_validation')}"
        )
    key = validation_key(first)
    members = [
        {
            "weights": member_file(name, index),
            "run": card.name,
            "seed": card.training.get("seed"),
            "sha256_of_run": card.sha256,
            f"validation_{key}": card.metrics.get("validation", {}).get(key),
            "best_epoch": card.training.get("best_epoch"),
            "command": card.training.get("command", ""),
        }
        for index, card in enumerate(cards)
    ]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out_dir))  # nothing of the model in use changes until
    # every figure is computed; then its files are swapped in (os.replace, one by one), the card last
    try:
        ensemble = write_members(cards, members, staging)
        ensemble.name, ensemble.path = name, staging / f"{name}.json"
        ensemble.cam_layer = ENSEMBLE_FEATURES
        ensemble.threshold, ensemble.threshold_method = None, ""
        ensemble.architecture = (
            f"mean of the logits of {len(cards)} runs of one recipe (seeds "
            + ", ".join(str(m["seed"]) for m in members)
            + "), merged into one flat network (core.models.networks.merged_classifier; Grad-CAM of the mean's score "
            f"over every member's last feature maps, layer {ENSEMBLE_FEATURES}); each run: {first.architecture}"
        )
        model = ScanModel.load(ensemble, staging)  # the members' sha256 checked, merged as the app merges them
        x_val = load_arrays([s.path for s in validation], model.prepare)
        y_val = np.array([s.label for s in validation])
        logits = predict_in_batches(model.logits, x_val)
        ensemble.metrics = {"validation": calibrate(ensemble, logits, y_val, "the validation split")}
        ensemble.training = _training_record(cards, members, selection)
        ensemble.save()
        for member in members:
            (staging / member["weights"]).replace(out_dir / member["weights"])
        (staging / f"{name}.json").replace(out_dir / f"{name}.json")
        ensemble.path = out_dir / f"{name}.json"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    remove_stale_members(ensemble, out_dir)
    runs = ", ".join(f"{member['run']} {member['validation_' + key]:.4f}" for member in members)
    log(f"{name}: mean of {len(cards)} runs, validation {key} {ensemble.metrics['validation'][key]:.4f} ({runs})")
    return ensemble


def _training_record(cards: Sequence[ModelCard], members: list[dict], selection: str) -> dict[str, Any]:
    first = cards[0].training
    return {
        "initialisation": first.get("initialisation", ""),
        "epochs_run": max(int(card.training.get("epochs_run") or 0) for card in cards),
        "batch_size": first.get("batch_size"),
        "optimiser": first.get("optimiser"),
        "loss": first.get("loss"),
        "augmentation": first.get("augmentation"),
        "early_stopping": first.get("early_stopping"),
        "seconds": round(sum(float(card.training.get("seconds") or 0.0) for card in cards), 1),
        "members": members,
        "selection": selection,
    }
