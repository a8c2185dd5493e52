"""Combining trained CT infection networks into one model (`python -m core.train ct-infection --ensemble-of`):
runs on one split (settings rechosen on their shared held-out slices), the K runs of a cross-validation (settings
chosen on their out-of-fold masks), or refits on every slice (settings kept from the model they repeat)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.checks.metrics import dice
from core.data.ct import list_ct
from core.models.cards import ModelCard, remove_stale_members, sha256_of
from core.models.scan_model import ScanModel
from core.training.ct import CtChoiceError, load_slices, refit_method, refit_validation
from core.training.loops import choose_mask_settings


def ensemble_ct(
    member_cards: Sequence[Path], data_dir: Path, out_dir: Path, log: Callable[[str], None] = print
) -> ModelCard:
    """One infection model from several: the mean of their masks. Runs on the same split (`--split-seed`),
    differing in their seed: the mask threshold and test-time flip rechosen by the same rule on the validation
    slices they all held out. The K runs of a cross-validation (`--folds`): chosen on their out-of-fold masks.
    Refits on every slice: kept from the model they repeat. Writes the first member as NAME.keras, the others
    as NAME.mK.keras (each file stays under the 10 MB limit) and one card listing them; `ScanModel.load` averages
    them."""
    cards = [ModelCard.load(Path(path)) for path in member_cards]
    first = cards[0]
    if len(cards) < 2:
        raise CtChoiceError("an ensemble needs at least two member cards")
    for card in cards:
        if card.members:
            raise CtChoiceError(f"{card.path} is an ensemble already: give its members")
        if (card.task, card.input, card.preprocessing) != (first.task, first.input, first.preprocessing):
            raise CtChoiceError(f"{card.path} reads other inputs than {first.path}: members must share task and input")
        if _kind(card) != _kind(first):
            raise CtChoiceError(
                f"{card.path} and {first.path}: refits, cross-validation folds and split runs do not mix in an ensemble"
            )
        if card.data.get("refit_of"):
            networks = lambda c: (c.data["refit_of"].get("sha256"), c.data["refit_of"].get("members_sha256"))  # noqa: E731
            if networks(card) != networks(first):
                raise CtChoiceError(f"{card.path} is the refit of another model than {first.path}")
        elif _kind(card) == "split" and (
            not card.data.get("validation_slices") or card.data["validation_slices"] != first.data["validation_slices"]
        ):
            raise CtChoiceError(f"{card.path} held out other validation slices than {first.path} (use --split-seed)")
    digests = [card.sha256 or sha256_of(card.weights_path) for card in cards]
    if len(set(digests)) != len(digests):
        raise CtChoiceError("two member cards hold the same network: each member must be a run of its own")
    if first.data.get("refit_of"):
        return _ensemble_of_refits(cards, out_dir, log)
    if _kind(first) == "folds":
        return _ensemble_of_folds(cards, data_dir, out_dir, log)
    held_out = set(first.data["validation_slices"])
    validation = [item for item in list_ct(data_dir) if item.image.stem in held_out]
    if len(validation) != len(held_out):
        raise CtChoiceError(f"{data_dir} lacks some of the members' validation slices")
    models = [ScanModel.load(card) for card in cards]
    x_val, y_val = load_slices(validation, first.input.height, models[0].prepare)
    masks_val = y_val[..., 0] >= 0.5

    def slice_dice(probabilities: np.ndarray, threshold: float) -> float:
        return float(np.mean([dice(p >= threshold, t) for p, t in zip(probabilities, masks_val, strict=True)]))

    plain = [model.mask_probabilities(x_val, flip=False) for model in models]
    mirrored = [model.mask_probabilities(x_val[:, :, ::-1], flip=False)[:, :, ::-1] for model in models]
    flipped = [(p + m) / 2 for p, m in zip(plain, mirrored, strict=True)]  # as `mask_probabilities(flip=True)`
    threshold, flip, validation_dice = choose_mask_settings(np.mean(plain, 0), np.mean(flipped, 0), slice_dice)
    members = []
    for index, card in enumerate(cards):
        at_ensemble = slice_dice(flipped[index] if flip else plain[index], threshold)
        members.append(_member_row(card, member_file(first.name, index), at_ensemble,
                                   best_epoch=card.training.get("best_epoch")))  # fmt: skip
        log(f"member {index} (seed {card.training.get('seed')}): validation Dice {members[-1]['validation_dice']:.4f} "
            f"at its own settings, {at_ensemble:.4f} at the ensemble's")  # fmt: skip
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


def _member_row(card: ModelCard, weights: str, at_ensemble: float, **how: object) -> dict:
    """An ensemble card's line for one member: its file, how it was trained (`how`), its seed, its own validation
    Dice and the Dice at the ensemble's settings on the same slices, and the command that made it."""
    return {
        "weights": weights,
        "seed": card.training.get("seed"),
        **how,
        "validation_dice": float(card.metrics.get("validation", {}).get("dice_mean", float("nan"))),
        "validation_dice_at_ensemble_settings": at_ensemble,
        "command": card.training.get("command", ""),
    }


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
    _note_kept_margin(
        Path(out_dir),
        f"chosen with the masks of {source['card']} (sha256 {str(source['sha256'])[:12]}), which held out "
        f"these slices; the infection model in use is its refit on all of train/ (these slices included), "
        "so the margin could not be rechosen and was kept",
        log,
    )
    return ensemble


def _kind(card: ModelCard) -> str:
    """How a CT member was trained: "refit" (every slice), "folds" (one fold of cross-validation) or "split"."""
    return "refit" if card.data.get("refit_of") else "folds" if card.data.get("cross_validation") else "split"


def _note_kept_margin(out_dir: Path, note: str, log: Callable[[str], None]) -> None:
    """Say in the lung card beside a new infection model that its margin was kept, and why (`note`)."""
    lungs = out_dir / "ct-lungs.json"
    if not lungs.is_file():
        return
    lung_card = ModelCard.load(lungs)  # its margin was chosen on slices this model now trains on: the card says so
    if not lung_card.decision_rule:
        return
    earlier = str(lung_card.decision_rule.get("infection_model_note", ""))
    chosen_with = earlier.split("; ")[0] if earlier.startswith("chosen with the masks of") else ""
    keep = chosen_with and not note.startswith("chosen with")  # where the margin came from stays said
    lung_card.decision_rule["infection_model_note"] = f"{chosen_with}; {note}" if keep else note
    lung_card.save()
    log("the lung outline keeps its margin (every slice is now a training slice of the infection model); rerun "
        "`python -m core.evaluate ct-lungs ... --update-card`: its test figures use this model")  # fmt: skip


def _ensemble_of_folds(
    cards: Sequence[ModelCard], data_dir: Path, out_dir: Path, log: Callable[[str], None]
) -> ModelCard:
    """The mean of the K runs of K-fold cross-validation (one per fold, same recipe). Each slice is predicted by
    the one member that held it out; the mask threshold and flip are chosen on these out-of-fold masks over all
    slices. The mean itself trained on every slice (each by K-1 members), so no slice is held out by it."""
    first = cards[0]
    plan = first.data["cross_validation"]
    folds = sorted(card.data["cross_validation"]["fold"] for card in cards)
    if folds != list(range(plan["folds"])):
        raise CtChoiceError(f"give one run per fold, folds 0 to {plan['folds'] - 1}: got folds {folds}")
    for card in cards[1:]:
        cv = card.data["cross_validation"]
        if (cv["folds"], cv["split_seed"]) != (plan["folds"], plan["split_seed"]):
            raise CtChoiceError(f"{card.path} cut other folds than {first.path} (--folds, --split-seed)")
        if _fold_recipe(card) != _fold_recipe(first):
            raise CtChoiceError(
                f"{card.path} was trained otherwise than {first.path} (network, stopping, loss, optimiser or batch)"
            )
    if "nothing chosen on validation" not in str(first.training.get("selection", "")):
        raise CtChoiceError(
            f"{first.path} kept its best epoch on its own fold: out-of-fold masks would then flatter the settings "
            "chosen on them; train the folds for a fixed length (--patience 0, --stop-after)"
        )
    slices = {item.image.stem: item for item in list_ct(data_dir)}
    if any(card.data.get("n_train", 0) + card.data.get("n_validation", 0) != len(slices) for card in cards):
        raise CtChoiceError(f"the folds were not cut from the {len(slices)} slices of {data_dir} (--limit, or a copy)")
    held_out = [card.data["validation_slices"] for card in cards]
    named = [name for names in held_out for name in names]
    if len(set(named)) != len(named) or set(named) != set(slices):
        raise CtChoiceError(f"the folds' held-out slices are not the {len(slices)} slices of {data_dir}, each once")
    models = [ScanModel.load(card) for card in cards]
    plain, flipped, truth, owner = [], [], [], []
    for index, (model, names) in enumerate(zip(models, held_out, strict=True)):
        x_fold, y_fold = load_slices([slices[name] for name in names], first.input.height, model.prepare)
        plain.append(model.mask_probabilities(x_fold, flip=False))
        flipped.append(model.mask_probabilities(x_fold, flip=True))
        truth.append(y_fold[..., 0] >= 0.5)
        owner += [index] * len(names)
    plain_all, flipped_all, truth_all = np.concatenate(plain), np.concatenate(flipped), np.concatenate(truth)
    owner_of = np.asarray(owner)

    def slice_dice(probabilities: np.ndarray, threshold: float, which: np.ndarray | None = None) -> float:
        rows = range(len(probabilities)) if which is None else np.flatnonzero(which)
        return float(np.mean([dice(probabilities[i] >= threshold, truth_all[i]) for i in rows]))

    threshold, flip, oof_dice = choose_mask_settings(plain_all, flipped_all, slice_dice)
    chosen = flipped_all if flip else plain_all
    members = []
    for index, card in enumerate(cards):
        at_ensemble = slice_dice(chosen, threshold, owner_of == index)
        row = _member_row(card, member_file(first.name, index), at_ensemble, fold=card.data["cross_validation"]["fold"],
                          epochs_run=card.training.get("epochs_run"), held_out=held_out[index])  # fmt: skip
        members.append(row)
        log(f"fold {row['fold']} (seed {row['seed']}): Dice {row['validation_dice']:.4f} on its {len(held_out[index])} "
            f"held-out slices at its own settings, {at_ensemble:.4f} at the ensemble's")  # fmt: skip
    out_dir = Path(out_dir)
    ensemble = _write_members(cards, members, out_dir)
    ensemble.mask_threshold, ensemble.test_time_flip = threshold, flip
    ensemble.threshold_method = (
        f"mask threshold and test-time flip maximising mean slice Dice over all {len(named)} train/ slices, each "
        f"predicted by the one member that held it out ({plan['folds']}-fold cross-validation, folds drawn by seed "
        f"{plan['split_seed']}); the members' mean itself holds no slice out"
    )
    seeds = ", ".join(str(member["seed"]) for member in members)
    ensemble.architecture = (
        f"mean of {len(cards)} networks of {plan['folds']}-fold cross-validation (seeds {seeds}), each trained on "
        f"{first.data.get('n_train')} of the {len(named)} slices of train/: {first.architecture}"
    )
    ensemble.data = {
        **first.data,
        "split": f"{plan['folds']}-fold cross-validation over all {len(named)} slices of train/ (folds drawn by seed "
        f"{plan['split_seed']}): every slice held out by one member and trained on by the others; test/ (48 slices) "
        "never used here",
        "n_train": len(named),
        "n_validation": 0,
        "validation_slices": [],  # no slice is unseen by the mean: nothing downstream may choose on one
        "cross_validation": {
            "folds": plan["folds"],
            "split_seed": plan["split_seed"],
            "held_out": {str(m["fold"]): m["held_out"] for m in members},
        },
    }
    ensemble.training = {"members": members, "selection": first.training.get("selection", "")}
    ensemble.limits = [
        f"Trained on {len(named)} radiologist-labelled slices (MedSeg; each of the {len(cards)} networks on "
        f"{first.data.get('n_train')} of them) as 8-bit images without Hounsfield units.",
        *first.limits[1:],
    ]
    ensemble.metrics = {
        "validation": {
            "n": 0,  # no slice is unseen by the mean of the members
            "out_of_fold_dice_mean": oof_dice,
            "out_of_fold_n": len(named),
            "note": f"out of fold: each of the {len(named)} slices predicted by the one member that never trained on "
            f"it, at the ensemble's threshold and flip: a single network's figure, with the threshold chosen on it. "
            f"The mean of all {len(cards)} has no held-out slice of its own (every slice trained {len(cards) - 1} of "
            "its members), and its threshold is applied to the mean of networks although chosen on single ones",
        }
    }
    ensemble.save(out_dir / f"{first.name}.json")
    remove_stale_members(ensemble, out_dir)
    log(f"{plan['folds']}-fold ensemble: out-of-fold Dice {oof_dice:.4f} over {len(named)} slices at mask threshold "
        f"{threshold}, flip {flip}")  # fmt: skip
    _note_kept_margin(
        out_dir,
        f"the infection model in use is the mean of {len(cards)} cross-validation folds, which together trained on "
        "every slice, so the margin could not be rechosen and was kept",
        log,
    )
    return ensemble


def _fold_recipe(card: ModelCard) -> tuple:
    """What the runs of one cross-validation share: network, stopping, loss, optimiser, batch and slice count."""
    training = card.training
    return (card.architecture, training.get("selection"), training.get("loss"), training.get("optimiser"),
            training.get("batch_size"), card.data.get("n_train", 0) + card.data.get("n_validation", 0))  # fmt: skip
