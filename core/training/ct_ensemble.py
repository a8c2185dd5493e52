"""Combining trained CT infection networks into one model (`python -m core.train ct-infection --ensemble-of`):
runs on one split (settings rechosen on their shared held-out slices), the K runs of a cross-validation (settings
chosen on their out-of-fold masks), or refits on every slice (settings kept from the model they repeat)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from core.checks.metrics import dice
from core.data.ct import list_ct
from core.models.cards import ModelCard, member_file, remove_stale_members, sha256_of, write_members
from core.models.scan_model import ScanModel
from core.training.ct import CtChoiceError, load_slices, member_network, refit_method, refit_validation, same_network
from core.training.loops import choose_mask_settings


def ensemble_ct(
    member_cards: Sequence[Path], data_dir: Path, out_dir: Path, log: Callable[[str], None] = print
) -> ModelCard:
    """One infection model from several: the mean of their masks. Runs on the same split (`--split-seed`),
    differing in their seed: the mask threshold and test-time flip rechosen by the same rule on the validation
    slices they all held out. The K runs of a cross-validation (`--folds`): chosen on their out-of-fold masks;
    an earlier ensemble of folds, given by its card, joins new runs of the same folds (repeated cross-validation).
    Refits on every slice: kept from the model they repeat. Writes the first member as NAME.keras, the others
    as NAME.mK.keras (each file stays under the 10 MB limit) and one card listing them; `ScanModel.load` averages
    them."""
    given = [ModelCard.load(Path(path)) for path in member_cards]
    sets = [runs for card in given if card.members for runs in _fold_sets_of(card)]  # earlier fold ensembles
    loose = [card for card in given if not card.members]
    cards = [run for runs in sets for run in runs] + loose
    first = cards[0]
    if len(cards) < 2:
        raise CtChoiceError("an ensemble needs at least two member cards")
    for card in cards:
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
        return _ensemble_of_folds([*sets, *_sets_of(loose)], data_dir, out_dir, log)
    held_out = set(first.data["validation_slices"])
    validation = [item for item in list_ct(data_dir) if item.image.stem in held_out]
    if len(validation) != len(held_out):
        raise CtChoiceError(f"{data_dir} lacks some of the members' validation slices")
    models = [ScanModel.load(card) for card in cards]
    x_val, y_val = load_slices(validation, first.input.height, models[0].prepare)
    masks_val = y_val[..., 0] >= 0.5

    def slice_dice(probabilities: np.ndarray, threshold: float) -> float:
        return float(np.mean([dice(p >= threshold, t) for p, t in zip(probabilities, masks_val, strict=True)]))

    plain, flipped = zip(*(model.plain_and_flipped(x_val) for model in models), strict=True)
    threshold, flip, validation_dice = choose_mask_settings(np.mean(plain, 0), np.mean(flipped, 0), slice_dice)
    members = []
    for index, card in enumerate(cards):
        at_ensemble = slice_dice(flipped[index] if flip else plain[index], threshold)
        members.append(_member_row(card, member_file(first.name, index), at_ensemble,
                                   best_epoch=card.training.get("best_epoch")))  # fmt: skip
        log(f"member {index} (seed {card.training.get('seed')}): validation Dice {members[-1]['validation_dice']:.4f} "
            f"at its own settings, {at_ensemble:.4f} at the ensemble's")  # fmt: skip
    out_dir = Path(out_dir)
    ensemble = write_members(cards, members, out_dir)
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
    ensemble = write_members(cards, members, out_dir)
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


def _sets_of(runs: Sequence[ModelCard]) -> list[list[ModelCard]]:
    """Fold runs given one by one, as sets of cross-validation: the k-th run given for each fold is in set k."""
    by_fold: dict[int, list[ModelCard]] = {}
    for card in runs:
        by_fold.setdefault(card.data["cross_validation"]["fold"], []).append(card)
    depth = max((len(cards) for cards in by_fold.values()), default=0)
    return [[cards[k] for _, cards in sorted(by_fold.items()) if k < len(cards)] for k in range(depth)]


def _fold_sets_of(ensemble: ModelCard) -> list[list[ModelCard]]:
    """The runs inside an ensemble of cross-validation folds, each with the card it had (its weights stay beside
    the ensemble's card), set by set, so that a new ensemble can join them with more runs of the same folds."""
    plan = ensemble.data.get("cross_validation", {})
    rows = ensemble.training.get("members", [])
    files = [(ensemble.weights, ensemble.sha256), *[(m["weights"], m.get("sha256", "")) for m in ensemble.members]]
    if "held_out" not in plan or len(rows) != len(files):
        raise CtChoiceError(f"{ensemble.path} is an ensemble already, not of cross-validation folds: give its members")
    architecture = ensemble.training.get("member_architecture") or member_network(ensemble.architecture)
    recipe = {key: value for key, value in ensemble.training.items() if key != "members"}
    runs = []
    for row, (weights, digest) in zip(rows, files, strict=True):
        if row.get("weights", weights) != weights:
            raise CtChoiceError(f"{ensemble.path}: its member rows and weights files are not in the same order")
        held = list(row["held_out"])
        run = ModelCard.from_dict({**ensemble.to_dict(), "members": [], "weights": weights, "sha256": digest})
        run.path = ensemble.path  # the weights are found beside the ensemble's card; the run is never saved
        run.architecture = architecture
        cross_validation = {"folds": plan["folds"], "split_seed": plan["split_seed"], "fold": row["fold"]}
        run.data = {**ensemble.data, "n_train": ensemble.data["n_train"] - len(held), "n_validation": len(held),
                    "validation_slices": held, "cross_validation": cross_validation}  # fmt: skip
        run.training = {**recipe, "seed": row.get("seed"), "epochs_run": row.get("epochs_run"),
                        "command": row.get("command", "")}  # fmt: skip
        run.metrics = {"validation": {"dice_mean": row.get("validation_dice", float("nan"))}}
        runs.append(run)
    repeats = [row.get("repeat", 0) for row in rows]
    return [[run for run, number in zip(runs, repeats, strict=True) if number == k] for k in sorted(set(repeats))]


def _ensemble_of_folds(
    sets: Sequence[Sequence[ModelCard]], data_dir: Path, out_dir: Path, log: Callable[[str], None]
) -> ModelCard:
    """The mean of the K runs of K-fold cross-validation (one per fold, same recipe), or of several such sets on
    the same folds (repeated cross-validation: an earlier fold ensemble's runs, then the new cards). Each slice
    is predicted by the mean of the runs that held it out; the mask threshold and flip are chosen on these
    out-of-fold masks over all slices. The mean itself trained on every slice (each by all but the runs of its
    fold), so no slice is held out by it."""
    cards = [card for runs in sets for card in runs]
    first = cards[0]
    plan = first.data["cross_validation"]
    for runs in sets:
        folds = sorted(card.data["cross_validation"]["fold"] for card in runs)
        if folds != list(range(plan["folds"])):
            raise CtChoiceError(f"give one run per fold, folds 0 to {plan['folds'] - 1}: got folds {folds}")
        for card in runs[1:]:
            if _fold_recipe(card) != _fold_recipe(runs[0]):
                raise CtChoiceError(
                    f"{card.path} was trained otherwise than {runs[0].path} (network, stopping, loss, optimiser or "
                    "batch)"
                )
        if not _same_recipe(runs[0], first):
            raise CtChoiceError(f"{runs[0].path} was trained otherwise than {first.path}: every set repeats one recipe")
    for card in cards[1:]:
        cv = card.data["cross_validation"]
        if (cv["folds"], cv["split_seed"]) != (plan["folds"], plan["split_seed"]):
            raise CtChoiceError(f"{card.path} cut other folds than {first.path} (--folds, --split-seed)")
    for card in cards:
        if "nothing chosen on validation" not in str(card.training.get("selection", "")):
            raise CtChoiceError(
                f"{card.path} kept its best epoch on its own fold: out-of-fold masks would then flatter the settings "
                "chosen on them; train the folds for a fixed length (--patience 0, --stop-after)"
            )
    slices = {item.image.stem: item for item in list_ct(data_dir)}
    if any(card.data.get("n_train", 0) + card.data.get("n_validation", 0) != len(slices) for card in cards):
        raise CtChoiceError(f"the folds were not cut from the {len(slices)} slices of {data_dir} (--limit, or a copy)")
    fold_of = [card.data["cross_validation"]["fold"] for card in cards]
    set_of = [number for number, runs in enumerate(sets) for _ in runs]
    runs_of_fold = [[index for index, f in enumerate(fold_of) if f == fold] for fold in range(plan["folds"])]
    held_out = [list(cards[runs[0]].data["validation_slices"]) for runs in runs_of_fold]
    if any(set(cards[index].data["validation_slices"]) != set(held_out[fold])
           for fold, runs in enumerate(runs_of_fold) for index in runs):  # fmt: skip
        raise CtChoiceError("runs of the same fold held out other slices: the sets were not cut alike")
    named = [name for names in held_out for name in names]
    if len(set(named)) != len(named) or set(named) != set(slices):
        raise CtChoiceError(f"the folds' held-out slices are not the {len(slices)} slices of {data_dir}, each once")
    repeats = len(sets)
    models = [ScanModel.load(card) for card in cards]
    plain, flipped, truth, rows_of_fold, own = [], [], [], [], {}
    for fold, names in enumerate(held_out):
        x_fold, y_fold = load_slices([slices[name] for name in names], first.input.height, models[0].prepare)
        runs = runs_of_fold[fold]
        for index in runs:
            own[index] = models[index].plain_and_flipped(x_fold)
        plain.append(np.mean([own[index][0] for index in runs], axis=0))
        flipped.append(np.mean([own[index][1] for index in runs], axis=0))
        truth.append(y_fold[..., 0] >= 0.5)
        rows_of_fold.append(len(names))
    plain_all, flipped_all, truth_all = np.concatenate(plain), np.concatenate(flipped), np.concatenate(truth)
    fold_start = np.cumsum([0, *rows_of_fold])

    def slice_dice(probabilities: np.ndarray, threshold: float, fold: int | None = None) -> float:
        truths = truth_all if fold is None else truth_all[fold_start[fold] : fold_start[fold + 1]]
        return float(np.mean([dice(p >= threshold, t) for p, t in zip(probabilities, truths, strict=True)]))

    threshold, flip, oof_dice = choose_mask_settings(plain_all, flipped_all, slice_dice)
    members = []
    for index, card in enumerate(cards):
        fold = fold_of[index]
        at_ensemble = slice_dice(own[index][1 if flip else 0], threshold, fold)
        row = _member_row(card, member_file(first.name, index), at_ensemble, fold=fold, repeat=set_of[index],
                          epochs_run=card.training.get("epochs_run"), held_out=held_out[fold])  # fmt: skip
        members.append(row)
        log(
            f"fold {fold}, set {set_of[index]} (seed {row['seed']}): Dice {row['validation_dice']:.4f} on its "
            f"{len(held_out[fold])} held-out slices at its own settings, {at_ensemble:.4f} at the ensemble's"
        )
    out_dir = Path(out_dir)
    ensemble = write_members(cards, members, out_dir)
    ensemble.mask_threshold, ensemble.test_time_flip = threshold, flip
    predicted_by = "the one member" if repeats == 1 else f"the mean of the {repeats} members"
    of_folds = f"{plan['folds']}-fold cross-validation" + (f" run {repeats} times" if repeats > 1 else "")
    ensemble.threshold_method = (
        f"mask threshold and test-time flip maximising mean slice Dice over all {len(named)} train/ slices, each "
        f"predicted by {predicted_by} that held it out ({of_folds}, folds drawn by seed {plan['split_seed']}); the "
        "members' mean itself holds no slice out"
    )
    seeds = ", ".join(str(member["seed"]) for member in members)
    ensemble.architecture = (
        f"mean of {len(cards)} networks of {of_folds} (seeds {seeds}), each trained on "
        f"{first.data.get('n_train')} of the {len(named)} slices of train/: {first.architecture}"
    )
    cross_validation = {"folds": plan["folds"], "split_seed": plan["split_seed"]}
    if repeats > 1:
        cross_validation["runs_per_fold"] = repeats
    cross_validation["held_out"] = {str(fold): names for fold, names in enumerate(held_out)}
    ensemble.data = {
        **{key: value for key, value in first.data.items() if key != "cross_validation"},
        "split": f"{of_folds} over all {len(named)} slices of train/ (folds drawn by seed {plan['split_seed']}): "
        "every slice held out by the run(s) of its fold and trained on by the others; test/ (48 slices) never "
        "used here",
        "n_train": len(named),
        "n_validation": 0,
        "validation_slices": [],  # no slice is unseen by the mean: nothing downstream may choose on one
        "cross_validation": cross_validation,
    }
    recipe = {key: known[0] for key in ("loss", "optimiser", "batch_size")
              if (known := [c.training[key] for c in cards if c.training.get(key) is not None])}  # fmt: skip
    ensemble.training = {"members": members, "selection": first.training.get("selection", ""),
                         "member_architecture": first.architecture, **recipe}  # fmt: skip
    ensemble.limits = [
        f"Trained on {len(named)} radiologist-labelled slices (MedSeg; each of the {len(cards)} networks on "
        f"{first.data.get('n_train')} of them) as 8-bit images without Hounsfield units.",
        *first.limits[1:],
    ]
    figure = "a single network's figure" if repeats == 1 else f"the figure of a mean of {repeats} networks"
    ensemble.metrics = {
        "validation": {
            "n": 0,  # no slice is unseen by the mean of the members
            "out_of_fold_dice_mean": oof_dice,
            "out_of_fold_n": len(named),
            "note": f"out of fold: each of the {len(named)} slices predicted by {predicted_by} that never trained "
            f"on it, at the ensemble's threshold and flip: {figure}, with the threshold chosen on it. The mean of all "
            f"{len(cards)} has no held-out slice of its own (every slice trained {len(cards) - repeats} of its "
            "members), and its threshold is applied to the mean of more networks than it was chosen on",
        }
    }
    ensemble.save(out_dir / f"{first.name}.json")
    remove_stale_members(ensemble, out_dir)
    log(f"{of_folds} ensemble of {len(cards)}: out-of-fold Dice {oof_dice:.4f} over {len(named)} slices at mask "
        f"threshold {threshold}, flip {flip}")  # fmt: skip
    _note_kept_margin(
        out_dir,
        f"the infection model in use is the mean of {len(cards)} cross-validation runs, which together trained on "
        "every slice, so the margin could not be rechosen and was kept",
        log,
    )
    return ensemble


def _same_recipe(card: ModelCard, other: ModelCard) -> bool:
    """Whether two fold runs of different sets share a recipe: the same network, stopping and slice count, and the
    same loss, optimiser and batch where both cards say (cards of earlier fold ensembles did not keep them)."""
    mine, theirs = _fold_recipe(card), _fold_recipe(other)
    unknown_or_equal = all(a is None or b is None or a == b for a, b in zip(mine[2:5], theirs[2:5], strict=True))
    return same_network(mine[0], theirs[0]) and (mine[1], mine[5]) == (theirs[1], theirs[5]) and unknown_or_equal


def _fold_recipe(card: ModelCard) -> tuple:
    """What the runs of one cross-validation share: network, stopping, loss, optimiser, batch and slice count."""
    training = card.training
    return (card.architecture, training.get("selection"), training.get("loss"), training.get("optimiser"),
            training.get("batch_size"), card.data.get("n_train", 0) + card.data.get("n_validation", 0))  # fmt: skip
