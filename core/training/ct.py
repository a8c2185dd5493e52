"""Training the CT segmenters: the infection network (`ct-infection`, on a split, one fold of a cross-validation,
or a refit on every slice) and the lung network (`ct-lungs`) with its outline's margin. Combining trained
infection networks into one model: `core.training.ct_ensemble`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from core.checks.metrics import dice
from core.data.ct import CtSlice, list_ct, read_binary, read_grey
from core.models.cards import ModelCard
from core.models.networks import build_segmenter
from core.models.scan_model import ScanModel
from core.tasks.ct import infection_card, lung_card
from core.training.loops import FitSettings, export_with_card, fit_segmenter, history_fields
from core.transforms.augment import augment_pairs


class CtChoiceError(ValueError):
    """CT models that do not fit together: ensemble members, a refit and its source, or held-out slices."""


def load_slices(slices: Sequence[CtSlice], size: int, prepare, target_of=None) -> tuple[np.ndarray, np.ndarray]:
    """Prepared slices and their targets at `size` (the infection mask, or `target_of(grey, infection)`)."""
    images, masks = [], []
    for item in slices:
        pixels = read_grey(item.image)
        images.append(prepare(pixels))
        mask = read_binary(item.mask)
        if target_of is not None:
            mask = target_of(pixels, mask)
        target = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
        masks.append(target >= 0.5)
    return np.stack(images), np.stack(masks)[..., np.newaxis].astype(np.float32)


def split_slices(slices: Sequence[CtSlice], seed: int, validation_count: int = 8) -> tuple[list, list]:
    """(validation, train): `validation_count` slices drawn by `seed`, the rest for training."""
    order = np.random.default_rng(seed).permutation(len(slices))
    return [slices[i] for i in order[:validation_count]], [slices[i] for i in order[validation_count:]]


def fold_slices(slices: Sequence[CtSlice], seed: int, folds: int, fold: int) -> tuple[list, list]:
    """(validation, train) of cross-validation: the slices permuted by `seed`, cut into `folds` near-equal parts;
    part `fold` is held out, the others train. The `folds` runs of one seed hold out every slice exactly once."""
    if not 0 <= fold < folds or folds < 2 or folds > len(slices):
        raise CtChoiceError(f"fold {fold} of {folds} does not exist for {len(slices)} slices")
    parts = np.array_split(np.random.default_rng(seed).permutation(len(slices)), folds)
    held_out = set(parts[fold].tolist())
    return [slices[i] for i in parts[fold]], [slices[i] for i in range(len(slices)) if i not in held_out]


def train_ct(
    data_dir: Path,
    out_dir: Path,
    size: int = 256,
    epochs: int = 150,
    batch_size: int = 8,
    learning_rate: float = 2e-3,
    validation_count: int = 8,
    widths: Sequence[int] = (8, 16, 32, 64, 128),
    seed: int = 0,
    patience: int = 40,
    limit: int | None = None,
    log: Callable[[str], None] = print,
    target: str = "infection",
    architecture: str = "resunet",
    encoder_blocks: int = 11,
    dice_loss: str = "batch",
    resume: bool = False,
    split_seed: int | None = None,
    refit_of: Path | None = None,
    stop_after: int | None = None,
    folds: int | None = None,
    fold: int | None = None,
) -> ModelCard:
    """Train the infection segmenter on `data_dir` (train/ only); 8 of its slices are held for validation.
    With ``target="lungs"``: the lung network (`ct-lungs`), on the pseudo-labels of `core.transforms.lungs`.
    `architecture` "lite0-unet": a U-Net on the first `encoder_blocks` blocks of the EfficientNet-Lite0 encoder
    from ImageNet (`widths` unused). `split_seed` (default `seed`) draws the validation slices, `seed` the rest
    (initialisation, shuffling, augmentation): members of an ensemble share a split and differ in their seed.
    `refit_of` (a card of the same recipe trained on a split of this folder): train on every slice, for exactly
    `epochs` (no validation, so nothing to stop on or choose), and take that card's mask threshold and flip;
    `stop_after` ends a fixed-length run after that epoch of the `epochs`-long cosine schedule. `folds`, `fold`:
    hold out part `fold` of `folds` (drawn by `split_seed`) instead of 8 slices, for a cross-validated ensemble."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    started = time.time()
    slices = list_ct(data_dir)[:limit] if limit else list_ct(data_dir)
    split_seed = seed if split_seed is None else split_seed
    source = None if refit_of is None else refit_source(Path(refit_of), slices, size, target)
    if source is not None and folds is not None:
        raise CtChoiceError("a refit holds out nothing: it has no fold")
    if source is not None:
        validation, train, patience = [], list(slices), None
    elif folds is not None:
        validation, train = fold_slices(slices, split_seed, folds, int(fold or 0))
    else:
        validation, train = split_slices(slices, split_seed, validation_count)
    card = lung_card(size) if target == "lungs" else infection_card(size)
    preparer = ScanModel(card, None)
    target_of = None
    if target == "lungs":
        from core.transforms.lungs import pseudo_lungs

        target_of = pseudo_lungs
    x_train, y_train = load_slices(train, size, preparer.prepare, target_of)
    x_val, y_val = load_slices(validation, size, preparer.prepare, target_of) if validation else (x_train, y_train)
    log(f"{card.name}: train {len(x_train)} / validation {len(validation)} slices")
    model, description = build_segmenter(architecture, size, widths, encoder_blocks, "ct")
    if source is not None and not same_network(str(source["architecture"]), description):
        raise CtChoiceError(f"{refit_of} is another network ({source['architecture']}): a refit repeats its recipe")
    loss = "binary cross-entropy + (1 - soft Dice" + (" per slice, averaged)" if dice_loss == "per-slice" else ")")
    if source is not None and source["loss"] not in (None, loss):
        raise CtChoiceError(f"{refit_of} was trained with another loss ({source['loss']}): a refit repeats its recipe")
    steps = int(np.ceil(len(x_train) / batch_size)) * 4  # each epoch sees every slice four times, augmented
    batches = (
        tf.data.Dataset.from_tensor_slices((x_train, y_train))
        .shuffle(len(x_train), seed=seed)
        .repeat()
        .batch(batch_size)
        .map(augment_pairs(seed), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    masks_val = y_val[..., 0] >= 0.5

    def slice_dice(probabilities: np.ndarray, threshold: float) -> float:
        return float(np.mean([dice(p >= threshold, t) for p, t in zip(probabilities, masks_val, strict=True)]))

    checkpoint = Path(out_dir) / ".checkpoints" / f"{card.name}.keras"
    settings = FitSettings(epochs, batch_size, learning_rate, patience, seed, checkpoint, resume, stop_after)
    metric = "Dice" if validation else "training Dice"  # a refit: logged to follow the fit, never used
    fit = fit_segmenter(model, batches, steps, x_val, slice_dice, settings, log, metric=metric,
                        choose_flip=source is None, dice=dice_loss)  # fmt: skip
    card.mask_threshold, card.test_time_flip, validation_dice = (
        fit.mask_threshold,
        fit.test_time_flip,
        fit.validation_dice,
    )
    card.threshold_method = (
        f"mask threshold and test-time flip maximising mean slice Dice on {len(validation)} validation slices "
        "taken from train/"
    )
    card.architecture = description
    card.data = {
        **card.data,
        "source": "COVID-19 CT segmentation (MedSeg), Inf-Net split: covid_ct_seg/train (50 slices)",
        "split": f"{len(train)} train / {len(validation)} validation slices from train/ (seed {split_seed}); "
        "test/ (48 slices) never used here. "
        "The set has no patient ids: validation slices may share patients with training slices.",
        "n_train": len(train),
        "n_validation": len(validation),
        "validation_slices": [item.image.stem for item in validation],
    }
    if folds is not None:
        card.data["split"] = (
            f"fold {int(fold or 0) + 1} of {folds}: {len(train)} train / {len(validation)} validation slices from "
            f"train/ (folds drawn by seed {split_seed}); test/ (48 slices) never used here. The set has no patient "
            "ids: validation slices may share patients with training slices."
        )
        card.data["cross_validation"] = {"folds": folds, "fold": int(fold or 0), "split_seed": split_seed}
    if source is not None:
        card.mask_threshold, card.test_time_flip = source["mask_threshold"], source["test_time_flip"]
        card.threshold_method = refit_method(source)
        card.data["split"] = refit_split(len(train), source)
        card.data["refit_of"] = source
    card.training = history_fields(
        fit.best, settings, started,
        loss=loss,
        augmentation="horizontal flip, rotation, zoom, shift, contrast, 4 augmented passes per epoch",
    )  # fmt: skip
    if target == "infection":  # the card's first limit names the slices this network trained on
        card.limits = [re.sub(r"^Trained on \d+ ", f"Trained on {len(train)} ", card.limits[0]), *card.limits[1:]]
    card.metrics = {"validation": {"n": len(validation), "dice_mean": validation_dice}}
    if source is not None:
        card.metrics = {"validation": refit_validation(source)}
    export_with_card(model, card, out_dir, log)
    if validation:
        log(f"validation Dice {validation_dice:.4f} at mask threshold {card.mask_threshold}, "
            f"flip {card.test_time_flip}")  # fmt: skip
    else:
        log(f"refit on all {len(train)} slices; mask threshold {card.mask_threshold}, flip {card.test_time_flip} "
            f"from {source['card']}")  # fmt: skip
    return card


def refit_source(path: Path, slices: Sequence[CtSlice], size: int, target: str) -> dict:
    """What a refit takes from the validated model it repeats on all slices (the card at `path`): its mask
    threshold and flip, with where they were chosen and how it was trained. The source must be an infection
    model at this input size whose validation slices all lie in this folder (a split of the same data), with a
    validation Dice, not itself a refit."""
    source = ModelCard.load(Path(path))
    if target != "infection":
        raise CtChoiceError("a refit applies to ct-infection only")
    named = source.data.get("validation_slices") or []
    if source.data.get("refit_of") or not named:
        raise CtChoiceError(f"{path} held out no validation slice: refit from a model that chose its settings")
    if source.mask_threshold is None or source.input.height != size:
        raise CtChoiceError(f"{path} is not a {size} px infection model with a mask threshold")
    validation_dice = source.metrics.get("validation", {}).get("dice_mean")
    if validation_dice is None:
        raise CtChoiceError(f"{path} records no validation Dice")
    missing = sorted(set(named) - {item.image.stem for item in slices}, key=_natural)
    if missing:
        raise CtChoiceError(f"{path} was validated on slices not in this folder: {', '.join(missing[:5])}")
    members = source.training.get("members") or [source.training]
    return {
        "card": str(path),
        "sha256": source.sha256,
        "members_sha256": [member["sha256"] for member in source.members],
        "networks": 1 + len(source.members),
        "mask_threshold": source.mask_threshold,
        "test_time_flip": source.test_time_flip,
        "threshold_method": source.threshold_method,
        "validation_dice": float(validation_dice),
        "validation_slices": list(named),
        "architecture": source.architecture,
        "loss": None if source.members else source.training.get("loss"),
        "commands": [member.get("command", "") for member in members],
        "best_epochs": [member.get("best_epoch") for member in members],
    }


def refit_validation(source: dict) -> dict:
    """A refit's validation record: none of its own (n 0), and the validated model's figure it repeats."""
    return {
        "n": 0,
        "note": f"refit on every train/ slice: no validation slice of its own; {source['card']} scored "
        f"{source['validation_dice']:.4f} on its {len(source['validation_slices'])} with the same settings",
        "source_dice_mean": source["validation_dice"],
        "source_n": len(source["validation_slices"]),
    }


def member_network(described: str) -> str:
    """The network of a card's architecture text: an ensemble's ("mean of N networks ...: X") names it after a
    colon; a single network's is the whole text."""
    return re.sub(r"^mean of \d+ networks[^:]*: ", "", described)


def same_network(described: str, description: str) -> bool:
    """Whether a card's architecture text (an ensemble's names its members' after a colon) describes the network
    of `description`: the same network named before the first bracket, and the same parameter count."""

    def key(text: str) -> tuple[str, str]:
        text = member_network(text)
        count = re.search(r"([\d,]+) parameters", text)
        return text.split(" (")[0].strip(), count.group(1) if count else ""

    return key(described) == key(description)


def refit_split(n_train: int, source: dict) -> str:
    """The card's split of a refit: every slice trained on, none held out."""
    return (
        f"all {n_train} slices of train/ (a refit: no validation slice; the settings come from {source['card']}, "
        f"which held out {len(source['validation_slices'])}); test/ (48 slices) never used here"
    )


def refit_method(source: dict, networks: int = 1) -> str:
    """The card's threshold method of a refit (of `networks` networks): the settings' origin, said plainly."""
    return (
        f"taken from the model validated as {source['card']} (sha256 {str(source['sha256'])[:12]}, "
        f"{1 + len(source.get('members_sha256', []))} network(s); validation Dice {source['validation_dice']:.4f}: "
        f"{source['threshold_method']}); "
        + ("this network" if networks == 1 else "these networks")
        + " trained on all of train/, validation slices included, so nothing was chosen for "
        + ("it" if networks == 1 else "them")
    )


#: Outline margins tried, as shares of the slice's shorter side (0.0075 is 3 px on a 424 px slice).
MARGIN_GRID = (0.0, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02)
MARGIN_TARGET = 0.99


def _held_out_slices(card: ModelCard, slices: Sequence[CtSlice]) -> set[str]:
    """The slices a CT model held out for validation (from its card, or redrawn from its seed)."""
    if "validation_slices" in card.data:  # named, or none at all (a refit held none out)
        return set(card.data["validation_slices"])
    count = int(card.data.get("n_validation", 8))
    return {item.image.stem for item in split_slices(slices, int(card.training.get("seed", 0)), count)[0]}


def _natural(name: str) -> tuple[bool, int, str]:
    """Slice names in numeric order where they are numbers ("2" before "10"), others after them."""
    return (not name.isdigit(), int(name) if name.isdigit() else 0, name)


def tune_outline_margin(
    lungs_card: Path, infection_card: Path, data_dir: Path, log: Callable[[str], None] = print
) -> ModelCard:
    """Choose the lung outline's margin on the slices that both CT networks held out (never trained on): the
    smallest margin of `MARGIN_GRID` under which the computed lungs hold at least 99% of the radiologists'
    infection pixels (the largest tried if none does); write it and the grid into the lung card."""
    from core.tasks.ct import outline_by_card

    card = ModelCard.load(lungs_card)
    lung_model, infection_model = ScanModel.load(card), ScanModel.load(ModelCard.load(infection_card))
    slices = list_ct(data_dir)
    held_out = _held_out_slices(card, slices) & _held_out_slices(infection_model.card, slices)
    chosen_slices = [item for item in slices if item.image.stem in held_out]
    if not chosen_slices:
        raise CtChoiceError(
            "the two CT models share no held-out slice under this folder (a refit holds none out): the margin "
            f"stays as chosen before ({card.decision_rule.get('outline_margin', 'none yet')}); give the model "
            "validated on a split as --infection-card"
        )
    predicted = []  # both networks once per slice; only the margin changes across the grid
    for item in chosen_slices:
        grey = read_grey(item.image)
        infection = infection_model.segment(grey) >= (infection_model.card.mask_threshold or 0.5)
        predicted.append((lung_model.segment(grey), infection, read_binary(item.mask)))
    grid = []
    for margin in MARGIN_GRID:
        outlines = [(outline_by_card(card, lungs, infection, margin), truth) for lungs, infection, truth in predicted]
        inside = sum(int((truth & lungs).sum()) for lungs, truth in outlines)
        total = sum(int(truth.sum()) for _, truth in outlines)
        share = float(np.median([lungs.mean() for lungs, _ in outlines]))
        grid.append({"outline_margin": margin, "containment": inside / max(total, 1),
                     "lung_share_of_slice_median": share})  # fmt: skip
    reaching = [row for row in grid if row["containment"] >= MARGIN_TARGET]
    best = reaching[0] if reaching else max(grid, key=lambda row: row["containment"])
    if not reaching:
        log(f"no margin up to {MARGIN_GRID[-1]:.1%} reaches {MARGIN_TARGET:.0%}: the largest tried is kept")
    card.decision_rule = {
        "outline_margin": best["outline_margin"],
        "chosen_by": f"the smallest margin (share of the slice's shorter side) under which the computed lungs hold "
        f">= {MARGIN_TARGET:.0%} of the radiologists' infection pixels on the {len(chosen_slices)} train/ slices that "
        "both CT networks held out for validation (python -m core.train ct-lungs --tune-only); test/ not used",
        "reached_target": bool(reaching),
        "validation_slices": sorted(held_out, key=_natural),
        "grid": grid,
    }
    card.save()
    log(f"outline margin {best['outline_margin']} (validation containment {best['containment']:.4f}); "
        f"without a margin {grid[0]['containment']:.4f}")  # fmt: skip
    return card
