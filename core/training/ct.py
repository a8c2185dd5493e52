"""Training the CT segmenters: the infection network (`ct-infection`) and the lung network (`ct-lungs`).

Length: one training function with its two ways to combine runs (ensembles of split runs, refits on every slice)
and the lung outline's margin; they share the slice loading and the checks of what fits together.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from core.checks.metrics import dice
from core.data.ct import CtSlice, list_ct, read_binary, read_grey
from core.models.cards import ModelCard, remove_stale_members, sha256_of
from core.models.networks import build_segmenter
from core.models.scan_model import ScanModel
from core.tasks.ct import infection_card, lung_card
from core.training.loops import FitSettings, choose_mask_settings, export_with_card, fit_segmenter, history_fields
from core.transforms.augment import augment_pairs


class CtChoiceError(ValueError):
    """CT models that do not fit together: ensemble members, a refit and its source, or held-out slices."""


def _load(slices: Sequence[CtSlice], size: int, prepare, target_of=None) -> tuple[np.ndarray, np.ndarray]:
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
    x_train, y_train = _load(train, size, preparer.prepare, target_of)
    x_val, y_val = _load(validation, size, preparer.prepare, target_of) if validation else (x_train, y_train)
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


def same_network(described: str, description: str) -> bool:
    """Whether a card's architecture text (an ensemble's names its members' after a colon) describes the network
    of `description`: the same network named before the first bracket, and the same parameter count."""

    def key(text: str) -> tuple[str, str]:
        text = re.sub(r"^mean of \d+ networks[^:]*: ", "", text)
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


def ensemble_ct(
    member_cards: Sequence[Path], data_dir: Path, out_dir: Path, log: Callable[[str], None] = print
) -> ModelCard:
    """One infection model from several trained on the same split (`--split-seed`), differing in their seed: the
    mean of their masks, with the mask threshold and test-time flip rechosen by the same rule on the validation
    slices they all held out. Writes the first member as NAME.keras, the others as NAME.mK.keras (each file
    stays under the 10 MB limit) and one card listing them; `ScanModel.load` averages them."""
    cards = [ModelCard.load(Path(path)) for path in member_cards]
    first = cards[0]
    if len(cards) < 2:
        raise CtChoiceError("an ensemble needs at least two member cards")
    for card in cards:
        if card.members:
            raise CtChoiceError(f"{card.path} is an ensemble already: give its members")
        if (card.task, card.input, card.preprocessing) != (first.task, first.input, first.preprocessing):
            raise CtChoiceError(f"{card.path} reads other inputs than {first.path}: members must share task and input")
        if bool(card.data.get("refit_of")) != bool(first.data.get("refit_of")):
            raise CtChoiceError(f"{card.path} and {first.path}: refits and split runs do not mix in one ensemble")
        if card.data.get("refit_of"):
            networks = lambda c: (c.data["refit_of"].get("sha256"), c.data["refit_of"].get("members_sha256"))  # noqa: E731
            if networks(card) != networks(first):
                raise CtChoiceError(f"{card.path} is the refit of another model than {first.path}")
        elif (
            not card.data.get("validation_slices") or card.data["validation_slices"] != first.data["validation_slices"]
        ):
            raise CtChoiceError(f"{card.path} held out other validation slices than {first.path} (use --split-seed)")
    digests = [card.sha256 or sha256_of(card.weights_path) for card in cards]
    if len(set(digests)) != len(digests):
        raise CtChoiceError("two member cards hold the same network: each member must be a run of its own")
    if first.data.get("refit_of"):
        return _ensemble_of_refits(cards, out_dir, log)
    held_out = set(first.data["validation_slices"])
    validation = [item for item in list_ct(data_dir) if item.image.stem in held_out]
    if len(validation) != len(held_out):
        raise CtChoiceError(f"{data_dir} lacks some of the members' validation slices")
    models = [ScanModel.load(card) for card in cards]
    x_val, y_val = _load(validation, first.input.height, models[0].prepare)
    masks_val = y_val[..., 0] >= 0.5

    def slice_dice(probabilities: np.ndarray, threshold: float) -> float:
        return float(np.mean([dice(p >= threshold, t) for p, t in zip(probabilities, masks_val, strict=True)]))

    plain = [model.mask_probabilities(x_val, flip=False) for model in models]
    mirrored = [model.mask_probabilities(x_val[:, :, ::-1], flip=False)[:, :, ::-1] for model in models]
    flipped = [(p + m) / 2 for p, m in zip(plain, mirrored, strict=True)]  # as `mask_probabilities(flip=True)`
    threshold, flip, validation_dice = choose_mask_settings(np.mean(plain, 0), np.mean(flipped, 0), slice_dice)
    members = []
    for index, card in enumerate(cards):
        own = float(card.metrics.get("validation", {}).get("dice_mean", float("nan")))
        at_ensemble = slice_dice(flipped[index] if flip else plain[index], threshold)
        members.append({"weights": member_file(first.name, index),
                        "seed": card.training.get("seed"), "best_epoch": card.training.get("best_epoch"),
                        "validation_dice": own, "validation_dice_at_ensemble_settings": at_ensemble,
                        "command": card.training.get("command", "")})  # fmt: skip
        log(f"member {index} (seed {card.training.get('seed')}): validation Dice {own:.4f} at its own settings, "
            f"{at_ensemble:.4f} at the ensemble's")  # fmt: skip
    out_dir = Path(out_dir)
    ensemble = _write_members(cards, members, out_dir)
    ensemble.mask_threshold, ensemble.test_time_flip = threshold, flip
    ensemble.threshold_method = (
        f"mask threshold and test-time flip maximising mean slice Dice of the {len(cards)} members' mean mask on the "
        f"{len(validation)} validation slices they all held out from train/"
    )
    ensemble.architecture = f"mean of {len(cards)} networks trained alike with seeds " + ", ".join(
        str(m["seed"]) for m in members
    ) + f" on one split: {first.architecture}"  # fmt: skip
    ensemble.training = {"members": members, "selection": "each member: its best validation epoch"}
    ensemble.metrics = {"validation": {"n": len(validation), "dice_mean": validation_dice}}
    ensemble.save(out_dir / f"{first.name}.json")
    remove_stale_members(ensemble, out_dir)
    log(f"ensemble of {len(cards)}: validation Dice {validation_dice:.4f} at mask threshold {threshold}, flip {flip}")
    log("the lung outline's margin was chosen with the earlier infection masks: rerun `python -m core.train ct-lungs "
        "... --tune-only` with this model, then `python -m core.evaluate ct-lungs`")  # fmt: skip
    return ensemble


def member_file(name: str, index: int) -> str:
    """The file of an ensemble's member `index`: NAME.keras for the first, NAME.mK.keras for the others."""
    return f"{name}.m{index}.keras" if index else f"{name}.keras"


def _write_members(cards: Sequence[ModelCard], members: list[dict], out_dir: Path) -> ModelCard:
    """Copy the members' networks into `out_dir` (NAME.keras, NAME.m1.keras, ...) and return the ensemble's card
    (the first member's, listing the others with their sha256); the caller fills in how it decides."""
    first = cards[0]
    payloads = [card.weights_path.read_bytes() for card in cards]  # read all before writing (out may hold them)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for member, payload in zip(members, payloads, strict=True):
        (out_dir / member["weights"]).write_bytes(payload)
    ensemble = ModelCard.from_dict({**first.to_dict(), "members": []})
    ensemble.weights = members[0]["weights"]
    ensemble.sha256 = sha256_of(out_dir / ensemble.weights)
    ensemble.members = [{"weights": m["weights"], "sha256": sha256_of(out_dir / m["weights"])} for m in members[1:]]
    ensemble.findings = {}
    return ensemble


def _ensemble_of_refits(cards: Sequence[ModelCard], out_dir: Path, log: Callable[[str], None]) -> ModelCard:
    """The mean of refits of one validated model (every slice trained on, none held out): nothing is left to
    choose on, so the mask threshold and flip stay those of the model they repeat."""
    first = cards[0]
    source = first.data["refit_of"]
    networks = 1 + len(source.get("members_sha256", []))
    if len(cards) != networks:
        raise CtChoiceError(f"the settings were chosen for a mean of {networks} network(s): give {networks} refits")
    for card in cards[1:]:
        for field in ("n_train", "validation_slices"):
            if card.data.get(field) != first.data.get(field):
                raise CtChoiceError(f"{card.path} trained on other slices than {first.path} ({field})")
        recipe = lambda c: (c.architecture, c.training.get("selection"), c.training.get("loss"))  # noqa: E731
        if recipe(card) != recipe(first):
            raise CtChoiceError(
                f"{card.path} was trained otherwise than {first.path} (network, stopping epoch or loss)"
            )
    members = [{"weights": member_file(first.name, index), "seed": card.training.get("seed"),
                "epochs_run": card.training.get("epochs_run"), "selection": card.training.get("selection", ""),
                "command": card.training.get("command", "")} for index, card in enumerate(cards)]  # fmt: skip
    ensemble = _write_members(cards, members, out_dir)
    ensemble.mask_threshold, ensemble.test_time_flip = source["mask_threshold"], source["test_time_flip"]
    ensemble.threshold_method = refit_method(source, len(cards))
    seeds = ", ".join(str(member["seed"]) for member in members)
    ensemble.architecture = (
        f"mean of {len(cards)} networks trained alike with seeds {seeds} on all {first.data.get('n_train')} "
        f"slices of train/: {first.architecture}"
    )
    ensemble.training = {"members": members, "selection": members[0]["selection"]}
    ensemble.metrics = {"validation": refit_validation(source)}
    ensemble.save(Path(out_dir) / f"{first.name}.json")
    remove_stale_members(ensemble, Path(out_dir))
    log(f"ensemble of {len(cards)} refits: mask threshold {ensemble.mask_threshold}, flip {ensemble.test_time_flip} "
        f"from {source['card']} (nothing left to choose them on)")  # fmt: skip
    lungs = Path(out_dir) / "ct-lungs.json"
    if lungs.is_file():  # its margin was chosen on slices this model now trains on: the lung card says so
        lung_card = ModelCard.load(lungs)
        if lung_card.decision_rule:
            lung_card.decision_rule["infection_model_note"] = (
                f"chosen with the masks of {source['card']} (sha256 {str(source['sha256'])[:12]}), which held out "
                f"these slices; the infection model in use is its refit on all of train/ (these slices included), "
                "so the margin could not be rechosen and was kept"
            )
            lung_card.save()
    log("the lung outline keeps its margin: every slice is now a training slice of the infection model")
    return ensemble


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
