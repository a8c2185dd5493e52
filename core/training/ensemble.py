"""An ensemble of trained classifier runs: the mean of their logits, one flat network for the app.

`average_classifiers` takes runs of one recipe that differ in their seed (same task, input, preprocessing and
validation patients), rebuilds their validation split from the training folder, averages their logits there
(`core.models.networks.merged_classifier`), fits the temperature (and, for two classes, the threshold) on those
same validation patients, and writes one card listing the members' files. The test set is never read here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import ScanSightError
from core.models.cards import ModelCard, member_file, remove_stale_members, write_members
from core.models.networks import ENSEMBLE_FEATURES
from core.models.scan_model import ScanModel
from core.training.loops import calibrate


class EnsembleError(ScanSightError):
    """Runs that cannot be averaged: another task, input, preprocessing or validation split."""


VALIDATION_FRACTION = 0.15  # every chest classifier's (`train_classifier`'s default)


def validation_key(card: ModelCard) -> str:
    """The validation figure a run is judged by: AUC for two classes, macro-F1 otherwise."""
    return "auc" if len(card.classes) == 2 else "macro_f1"


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


def split_seed_of(card: ModelCard) -> int:
    """The seed that drew a run's validation patients (its card's split note says "seed N")."""
    import re

    found = re.search(r"seed (\d+)\)", card.data.get("split", ""))
    if found is None:
        raise EnsembleError(f"{card.name}'s card does not say which seed drew its validation split")
    return int(found.group(1))


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
    _, validation = development_split(
        first.task, data_dir, split_seed_of(first), VALIDATION_FRACTION, int(first.training.get("seed", 0)), log=log
    )
    if len(validation) != first.data.get("n_validation"):
        raise EnsembleError(
            f"{data_dir} gives {len(validation)} validation images, the runs had {first.data.get('n_validation')}"
        )
    members = [
        {
            "weights": member_file(name, index),
            "run": card.name,
            "seed": card.training.get("seed"),
            "sha256_of_run": card.sha256,
            f"validation_{validation_key(card)}": card.metrics.get("validation", {}).get(validation_key(card)),
            "best_epoch": card.training.get("best_epoch"),
            "command": card.training.get("command", ""),
        }
        for index, card in enumerate(cards)
    ]
    ensemble = write_members(cards, members, out_dir)
    ensemble.name, ensemble.path = name, Path(out_dir) / f"{name}.json"
    ensemble.cam_layer = ENSEMBLE_FEATURES
    ensemble.threshold, ensemble.threshold_method = None, ""
    ensemble.architecture = (
        f"mean of the logits of {len(cards)} runs of one recipe (seeds "
        + ", ".join(str(m["seed"]) for m in members)
        + "), merged into one flat network (core.models.networks.merged_classifier; Grad-CAM over every member's "
        f"last feature maps, layer {ENSEMBLE_FEATURES}); each run: {first.architecture}"
    )
    model = ScanModel.load(ensemble, out_dir)  # the members' sha256 checked, merged as the app merges them
    x_val = load_arrays([s.path for s in validation], model.prepare)
    y_val = np.array([s.label for s in validation])
    logits = np.concatenate([model.logits(x_val[i : i + 64]) for i in range(0, len(x_val), 64)])
    ensemble.metrics = {"validation": calibrate(ensemble, logits, y_val, "the validation split")}
    ensemble.training = _training_record(cards, members, selection)
    ensemble.save()
    remove_stale_members(ensemble, Path(out_dir))
    key = validation_key(first)
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
