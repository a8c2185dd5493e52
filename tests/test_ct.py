"""CT infection: loader, lung-area share, and train + evaluate CLIs on a tiny generated set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli import evaluate, train
from core.data.ct import list_ct
from core.training.ct import MARGIN_GRID, fold_slices, split_slices
from core.transforms.lungs import (
    count_lungs,
    dark_lungs,
    infected_share,
    lung_outline,
    margin_pixels,
    pseudo_lungs,
)
from tests.helpers import data_path, synthetic_ct


def make_ct_set(root: Path, n: int = 10) -> Path:
    for folder in ("images", "masks"):
        (root / folder).mkdir(parents=True)
    for index in range(n):
        image, mask = synthetic_ct(lesion=index % 3 != 0)
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "images" / f"{index}.jpg", quality=95)
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / f"{index}.png")
    return root


def test_list_ct_pairs_images_and_masks_in_numeric_order(tmp_path):
    slices = list_ct(make_ct_set(tmp_path, n=12))
    assert [s.image.stem for s in slices] == [str(i) for i in range(12)]
    assert all(s.mask is not None and s.multiclass is None for s in slices)


def test_lungs_pseudo_labels_outline_and_share_on_a_synthetic_slice():
    image, mask = synthetic_ct(128)
    dark = dark_lungs(image)
    assert dark[64, 38] and not dark[5, 5] and not dark[64, 64]  # left lung yes, air and mediastinum no
    assert count_lungs(dark) == 2
    pseudo = pseudo_lungs(image, mask)
    assert pseudo[mask].all()  # infection is lung by definition
    lungs = lung_outline(dark.astype(np.float32), mask)
    share = infected_share(mask, lungs)
    assert lungs[mask].all() and share is not None and 0.05 < share < 0.3
    assert infected_share(np.ones_like(mask), lung_outline(np.zeros(mask.shape), np.ones_like(mask))) == 1.0
    assert infected_share(mask, np.zeros_like(mask)) is None


@pytest.mark.slow
def test_ct_train_then_evaluate_cli(tmp_path):
    data = make_ct_set(tmp_path / "ct")
    out = tmp_path / "weights"
    out.mkdir()
    args = ["ct-infection", "--data", str(data), "--out", str(out), "--epochs", "2", "--size", "64"]
    seeds = ["--seed", "1", "--split-seed", "0"]  # another run on the seed-0 split
    assert train.main([*args, "--widths", "4,8,8,16", "--batch-size", "4", "--dice", "per-slice", *seeds]) == 0
    card = json.loads((out / "ct-infection.json").read_text())
    held_out = [item.image.stem for item in split_slices(list_ct(data), 0)[0]]
    assert card["data"]["validation_slices"] == held_out and card["training"]["seed"] == 1
    training = card["training"]
    assert "per slice" in training["loss"] and training["command"].endswith("--dice per-slice --seed 1 --split-seed 0")
    report = tmp_path / "ct.json"
    assert evaluate.main(["ct-infection", "--data", str(data), "--out", str(report), "--weights", str(out)]) == 0
    result = json.loads(report.read_text())
    for key in ("n", "dice_mean", "iou_mean", "sensitivity", "specificity"):
        assert key in result
    assert result["n"] == 10 and len(result["per_slice"]) == 10
    spread = result["dice_spread"]
    assert spread["min"] <= spread["q25"] <= result["dice_median"] <= spread["q75"] <= spread["max"]
    for key in ("dice_mean", "dice_median"):  # 95% bootstrap intervals over slices
        low, high = result["ci95"][key]
        assert spread["min"] <= low <= result[key] <= high <= spread["max"]


@pytest.mark.slow
def test_ct_lungs_train_then_evaluate_cli(tmp_path):
    data = make_ct_set(tmp_path / "ct")
    out = tmp_path / "weights"
    out.mkdir()
    tiny = ["--data", str(data), "--out", str(out), "--epochs", "2", "--size", "64", "--widths", "4,8,8,16",
            "--batch-size", "4"]  # fmt: skip
    assert train.main(["ct-infection", *tiny]) == 0 and train.main(["ct-lungs", *tiny]) == 0
    rule = json.loads((out / "ct-lungs.json").read_text())["decision_rule"]
    assert rule["outline_margin"] in MARGIN_GRID and len(rule["grid"]) == len(MARGIN_GRID) and rule["validation_slices"]
    report = tmp_path / "ct-lungs.test.eval.json"
    assert evaluate.main(["ct-lungs", "--data", str(data), "--out", str(report), "--weights", str(out)]) == 0
    result = json.loads(report.read_text())
    for key in ("infection_inside_lungs", "share_error_pp_mean", "slices_with_two_lungs", "lung_share_of_slice_median"):
        assert key in result
    assert 0 <= result["infection_inside_lungs"] <= 1 and result["share_max"] <= 1
    assert (tmp_path / result["gallery"]).exists()


def test_the_lung_outline_grows_by_its_margin_and_keeps_the_infection():
    probability = np.zeros((200, 200), np.float32)
    probability[50:150, 40:90] = 1.0
    infection = np.zeros((200, 200), bool)
    infection[100:110, 92:96] = True  # just outside the lung: infection is lung by definition
    plain = lung_outline(probability, infection)
    grown = lung_outline(probability, infection, margin=0.01)  # 2 px on a 200 px slice
    assert margin_pixels(0.01, plain.shape) == 2
    assert plain[infection].all() and grown[infection].all() and (grown >= plain).all()
    assert not plain[100, 91] and grown[100, 91] and not grown[100, 40 - 3]
    for gap in range(1, 9):  # two lungs `gap` px apart, side by side and corner to corner, grown 1-6 px each
        side = np.zeros((200, 200), np.float32)
        side[50:150, 40:97] = side[50:150, 97 + gap : 160] = 1.0
        corner = np.zeros((200, 200), np.float32)
        corner[20:100, 20:100] = corner[100 + gap : 180, 100 + gap : 180] = 1.0
        for margin in (0.005, 0.01, 0.015, 0.02, 0.025, 0.03):
            for lungs in (side, corner):
                assert count_lungs(lung_outline(lungs, np.zeros((200, 200), bool), margin=margin)) == 2, (gap, margin)


def test_real_ct_folders():
    assert len(list_ct(data_path("covid_ct_seg", "train"))) == 50
    test = list_ct(data_path("covid_ct_seg", "test"))
    assert len(test) == 48 and all(s.multiclass is not None for s in test)


def _member(folder: Path, seed: int, held_out: list[str]) -> Path:
    """A tiny untrained infection network with its card, as `train_ct` leaves one (seed, validation slices)."""
    import keras

    from core.models.cards import sha256_of
    from core.models.networks import build_segmenter
    from core.tasks.ct import infection_card

    keras.utils.set_random_seed(seed)
    folder.mkdir(parents=True)
    card = infection_card(32)
    network, card.architecture = build_segmenter("resunet", 32, (4, 8, 8), 0, "ct")
    network.save(folder / card.weights)
    card.sha256, card.mask_threshold = sha256_of(folder / card.weights), 0.5
    card.data, card.training = {"validation_slices": held_out}, {"seed": seed, "best_epoch": 1}
    card.metrics = {"validation": {"n": len(held_out), "dice_mean": 0.1}}
    return card.save(folder / "ct-infection.json")


def test_an_ensemble_of_ct_members_is_their_mean_and_checks_every_file(tmp_path):
    from core.errors import ModelCardError
    from core.models.cards import ModelCard
    from core.models.scan_model import ScanModel
    from core.training.ct_ensemble import ensemble_ct

    data = make_ct_set(tmp_path / "ct", n=6)
    members = [_member(tmp_path / f"s{seed}", seed, ["1", "4"]) for seed in (0, 1, 2)]
    out = tmp_path / "weights"
    out.mkdir()
    (out / "ct-infection.m5.keras").write_bytes(b"left by an earlier, larger ensemble")
    card = ensemble_ct(members, data, out, log=lambda _: None)
    assert not (out / "ct-infection.m5.keras").exists()
    assert [m["weights"] for m in card.members] == ["ct-infection.m1.keras", "ct-infection.m2.keras"]
    assert [m["seed"] for m in card.training["members"]] == [0, 1, 2] and card.metrics["validation"]["n"] == 2
    assert card.mask_threshold is not None and "mean of 3 networks" in card.architecture
    batch = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    alone = [ScanModel.load(ModelCard.load(path)).logits(batch) for path in members]
    together = ScanModel.load(ModelCard.load(out / "ct-infection.json")).logits(batch)
    np.testing.assert_allclose(together, np.mean(alone, axis=0), atol=1e-5)
    assert not np.allclose(alone[0], alone[1])  # the members differ, so a missing one would show
    (out / "ct-infection.m2.keras").write_bytes((tmp_path / "s0" / "ct-infection.keras").read_bytes())
    with pytest.raises(ModelCardError, match="does not match the sha256"):
        ScanModel.load(ModelCard.load(out / "ct-infection.json"))
    other = _member(tmp_path / "other", 3, ["1", "5"])
    with pytest.raises(ValueError, match="other validation slices"):
        ensemble_ct([members[0], other], data, tmp_path / "refused", log=lambda _: None)
    with pytest.raises(ValueError, match="the same network"):
        ensemble_ct([members[0], members[0]], data, tmp_path / "refused", log=lambda _: None)
    with pytest.raises(SystemExit):  # the CLI says it in one line, no traceback
        train.main(["ct-infection", "--data", str(data), "--out", str(tmp_path / "refused"),
                    "--ensemble-of", str(members[0]), str(members[0])])  # fmt: skip


@pytest.mark.parametrize(
    ("task", "option", "says"),
    [
        ("pneumonia", ["--ensemble-of", "a.json", "b.json"], "applies to ct-infection only"),
        ("mri-tumour", ["--split-seed", "0"], "--split-seed applies to"),
        ("ct-infection", ["--ensemble-of", "a.json"], "at least two member cards"),
        ("ct-infection", ["--ensemble-of", "a.json", "b.json"], "no card at a.json, b.json"),
        ("pneumonia", ["--init", "backbone.keras", "--seed", "2"], "split seed 0 only"),
        ("pneumonia", ["--refit", "a.json"], "--refit applies to ct-infection only"),
        ("ct-infection", ["--refit", "a.json", "--epochs", "3"], "--refit: no card at a.json"),
        ("ct-infection", ["--stop-after", "3", "--epochs", "5"], "runs of a fixed length"),
        ("ct-infection", ["--patience", "0", "--stop-after", "6", "--epochs", "5"], "between 1 and --epochs"),
        ("ct-infection", ["--folds", "5"], "--folds and --fold go together"),
        ("ct-infection", ["--folds", "5", "--fold", "5"], "between 0 and K-1"),
        ("ct-lungs", ["--folds", "5", "--fold", "0"], "--folds applies to ct-infection only"),
        ("ct-infection", ["--folds", "2", "--fold", "0", "--refit", "a.json"], "--refit and --ensemble-of do not"),
        ("ct-infection", ["--folds", "2", "--fold", "0"], "give --split-seed"),
    ],
)
def test_options_are_refused_where_they_do_not_apply(tmp_path, task, option, says, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        train.main([task, "--data", str(tmp_path), *option])
    assert says in capsys.readouterr().err


def test_a_refit_trains_on_every_slice_with_the_validated_settings_and_joins_only_refits(tmp_path, capsys):
    from core.models.cards import ModelCard
    from core.training.ct import _held_out_slices
    from core.training.ct_ensemble import ensemble_ct

    data = make_ct_set(tmp_path / "ct")
    small = ["--size", "32", "--widths", "4,8,8", "--batch-size", "4", "--dice", "per-slice"]
    ct = ["ct-infection", "--data", str(data)]
    for seed in (0, 1):  # the validated model: a mean of two runs on one split
        assert train.main([*ct, "--out", str(tmp_path / f"split{seed}"), "--epochs", "1", *small,
                           "--seed", str(seed), "--split-seed", "0"]) == 0  # fmt: skip
    source_path = tmp_path / "validated" / "ct-infection.json"
    ensemble_ct([tmp_path / f"split{seed}" / "ct-infection.json" for seed in (0, 1)], data, source_path.parent,
                log=lambda _: None)  # fmt: skip
    source = ModelCard.load(source_path)
    source.mask_threshold, source.test_time_flip = 0.65, True  # settings no untrained refit would hit by chance
    source.save()

    def refit(out: Path, of: Path, seed: int) -> Path:
        options = ["--refit", str(of), "--epochs", "3", "--stop-after", "2", "--seed", str(seed)]
        assert train.main([*ct, "--out", str(out), *small, *options]) == 0
        return out / "ct-infection.json"

    refits = [refit(tmp_path / f"refit{seed}", source_path, seed) for seed in (0, 1)]
    card = ModelCard.load(refits[0])
    assert card.data["n_train"] == 10 and card.data["validation_slices"] == [] and card.data["refit_of"]
    assert (card.mask_threshold, card.test_time_flip) == (0.65, True)
    assert card.data["refit_of"]["sha256"] == source.sha256 and card.metrics["validation"]["n"] == 0
    assert len(card.data["refit_of"]["commands"]) == 2 and "--split-seed 0" in card.data["refit_of"]["commands"][1]
    assert (
        card.training["epochs_run"] == 2
        and "after epoch 2 of a cosine schedule over 3 epochs" in card.training["selection"]
    )
    assert [sorted(row) for row in card.training["history"]] == [["epoch", "loss", "training_Dice"]] * 2
    assert _held_out_slices(card, list_ct(data)) == set()  # nothing held out: the lung margin cannot be rechosen
    ensemble = ensemble_ct(refits, data, tmp_path / "weights", log=lambda _: None)
    assert (ensemble.mask_threshold, ensemble.test_time_flip, len(ensemble.members)) == (0.65, True, 1)
    assert "all 10 slices" in ensemble.architecture and "nothing was chosen" in ensemble.threshold_method
    refused = tmp_path / "refused"
    with pytest.raises(ValueError, match="do not mix"):
        ensemble_ct([refits[0], tmp_path / "split1" / "ct-infection.json"], data, refused, log=lambda _: None)
    of_one = refit(tmp_path / "refit-of-one", tmp_path / "split0" / "ct-infection.json", 2)
    with pytest.raises(ValueError, match="refit of another model"):
        ensemble_ct([refits[0], of_one], data, refused, log=lambda _: None)
    for options, says in (
        ([*ct, *small, "--refit", str(refits[0]), "--epochs", "2", "--out", str(refused)], "held out no validation"),
        ([*ct, "--size", "64", "--refit", str(source_path), "--epochs", "2", "--out", str(refused)], "not a 64 px"),
        (["ct-lungs", "--data", str(data), "--out", str(refused), "--infection-card", str(refits[0]), "--tune-only"],
         "trained on every slice"),
    ):  # fmt: skip
        with pytest.raises(SystemExit):  # one line each, no traceback
            train.main(options)
        assert says in capsys.readouterr().err


def test_a_refit_recognises_its_sources_network_whatever_the_cards_wording():
    from core.training.ct import same_network

    plain = "U-Net on EfficientNet-Lite0 blocks 0-10 from ImageNet (decoder: bilinear x2, skip), 855,569 parameters"
    worded = plain.replace("), 855,569", "), sigmoid mask; 855,569")
    assert same_network(f"mean of 3 networks trained alike with seeds 0, 1, 2 on one split: {plain}", worded)
    assert not same_network(plain, worded.replace("855,569", "1,203,457"))
    assert not same_network("ResUNet (widths 8-128), 855,569 parameters", worded)


def test_folds_hold_out_every_slice_exactly_once():
    slices = list(range(23))
    held_out = [fold_slices(slices, 4, 5, fold)[0] for fold in range(5)]
    assert sorted(i for part in held_out for i in part) == slices
    assert sorted(len(part) for part in held_out) == [4, 4, 5, 5, 5]
    validation, train_part = fold_slices(slices, 4, 5, 2)
    assert set(validation).isdisjoint(train_part) and len(validation) + len(train_part) == 23
    assert held_out != [fold_slices(slices, 5, 5, fold)[0] for fold in range(5)]  # the seed draws the folds
    with pytest.raises(ValueError, match="does not exist"):
        fold_slices(slices, 4, 5, 5)


def test_a_cross_validated_ensemble_chooses_its_settings_on_out_of_fold_masks(tmp_path, capsys):
    from core.models.cards import ModelCard
    from core.models.scan_model import ScanModel
    from core.training.ct import load_slices
    from core.training.ct_ensemble import ensemble_ct

    data = make_ct_set(tmp_path / "ct", n=6)
    small = ["--size", "32", "--widths", "4,8,8", "--batch-size", "4", "--dice", "per-slice", "--patience", "0"]

    def fold(folds: int, index: int, split_seed: int = 0) -> Path:
        out = tmp_path / f"f{folds}-{index}-{split_seed}"
        assert train.main(["ct-infection", "--data", str(data), "--out", str(out), *small, "--epochs", "2",
                           "--stop-after", "1", "--seed", str(index), "--split-seed", str(split_seed),
                           "--folds", str(folds), "--fold", str(index)]) == 0  # fmt: skip
        return out / "ct-infection.json"

    members = [fold(3, index) for index in range(3)]
    cards = [ModelCard.load(path) for path in members]
    assert [len(card.data["validation_slices"]) for card in cards] == [2, 2, 2]
    assert all(card.data["n_train"] == 4 and "fold" in card.data["split"] for card in cards)
    ensemble = ensemble_ct(members, data, tmp_path / "weights", log=lambda _: None)
    assert ensemble.data["validation_slices"] == [] and ensemble.metrics["validation"]["out_of_fold_n"] == 6
    assert ensemble.limits[0].startswith("Trained on 6 ") and "on 4 of them" in ensemble.limits[0]
    assert "3-fold cross-validation" in ensemble.architecture
    assert "out of fold" in ensemble.metrics["validation"]["note"]
    slices = {item.image.stem: item for item in list_ct(data)}
    out_of_fold = {False: [], True: []}  # each slice by the member that held it out, with and without the flip
    for card in cards:
        model = ScanModel.load(card)
        x, y = load_slices([slices[n] for n in card.data["validation_slices"]], 32, model.prepare)
        for flip in out_of_fold:
            out_of_fold[flip] += list(zip(model.mask_probabilities(x, flip=flip), y[..., 0] >= 0.5, strict=True))

    def recomputed(flip: bool, threshold: float) -> float:
        return float(np.mean([_dice(p >= threshold, t) for p, t in out_of_fold[flip]]))

    chosen = recomputed(ensemble.test_time_flip, ensemble.mask_threshold)
    assert ensemble.metrics["validation"]["out_of_fold_dice_mean"] == pytest.approx(chosen, abs=1e-6)
    grid = [round(0.2 + 0.05 * step, 2) for step in range(13)]
    assert all(recomputed(flip, t) <= chosen + 1e-9 for flip in (False, True) for t in grid)  # the best there is
    assert ScanModel.load(ModelCard.load(tmp_path / "weights" / "ct-infection.json")).card.members
    refused = tmp_path / "refused"
    with pytest.raises(ValueError, match="one run per fold"):
        ensemble_ct(members[:2], data, refused, log=lambda _: None)
    with pytest.raises(ValueError, match="other folds"):
        ensemble_ct([*members[:2], fold(3, 2, split_seed=1)], data, refused, log=lambda _: None)
    with pytest.raises(ValueError, match="do not mix"):
        ensemble_ct([members[0], _member(tmp_path / "split", 7, ["1", "4"])], data, refused, log=lambda _: None)
    with pytest.raises(ValueError, match="not cut from the 7 slices"):
        ensemble_ct(members, make_ct_set(tmp_path / "seven", n=7), refused, log=lambda _: None)
    early = []  # the same runs, had each kept its best epoch on its own fold
    for index, card in enumerate(cards):
        (tmp_path / f"early{index}").mkdir()
        (tmp_path / f"early{index}" / card.weights).write_bytes(card.weights_path.read_bytes())
        card.training["selection"] = "the best validation epoch"
        early.append(card.save(tmp_path / f"early{index}" / "ct-infection.json"))
    with pytest.raises(ValueError, match="kept its best epoch"):
        ensemble_ct(early, data, refused, log=lambda _: None)
    card = tmp_path / "weights" / "ct-infection.json"
    with pytest.raises(SystemExit):  # nothing is held out by the mean: the lung margin cannot be chosen against it
        train.main(["ct-lungs", "--data", str(data), "--out", str(refused), "--infection-card", str(card)])
    assert "trained on every slice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.main(["ct-infection", "--data", str(data), "--out", str(refused), "--refit", str(card), "--epochs", "2"])
    assert "held out no validation" in capsys.readouterr().err


def _dice(predicted: np.ndarray, truth: np.ndarray) -> float:
    from core.checks.metrics import dice

    return dice(predicted, truth)


def _fold_member(folder: Path, seed: int, fold: int, folds: list[list[str]], loss: str = "dice") -> Path:
    """A tiny untrained network with the card of one run of a cross-validation (`folds`: each fold's slices)."""
    from core.models.cards import ModelCard

    card = ModelCard.load(_member(folder, seed, folds[fold]))
    n_slices = sum(len(names) for names in folds)
    card.data.update(n_train=n_slices - len(folds[fold]), n_validation=len(folds[fold]),
                     cross_validation={"folds": len(folds), "fold": fold, "split_seed": 0})  # fmt: skip
    card.training.update(selection="the weights after epoch 1 (nothing chosen on validation)", loss=loss)
    return card.save()


def test_a_repeated_cross_validation_joins_an_earlier_fold_ensemble_with_new_runs_of_the_same_folds(tmp_path):
    import json

    from core.models.cards import ModelCard, sha256_of
    from core.models.scan_model import ScanModel
    from core.training.ct import load_slices
    from core.training.ct_ensemble import ensemble_ct

    data = make_ct_set(tmp_path / "ct", n=6)
    slices = {item.image.stem: item for item in list_ct(data)}
    folds = [sorted(slices)[index::3] for index in range(3)]
    first_runs = [_fold_member(tmp_path / f"a{f}", f, f, folds) for f in range(3)]
    earlier = ensemble_ct(first_runs, data, tmp_path / "earlier", log=lambda _: None)
    stored = json.loads(earlier.path.read_text())
    del stored["training"]["member_architecture"]  # as cards written before it was kept
    earlier.path.write_text(json.dumps(stored))
    new_runs = [_fold_member(tmp_path / f"b{f}", 3 + f, f, folds) for f in range(3)]
    joined = ensemble_ct([earlier.path, *new_runs], data, tmp_path / "joined", log=lambda _: None)
    rows = joined.training["members"]
    assert [(row["fold"], row["repeat"], row["seed"]) for row in rows] == [
        (0, 0, 0), (1, 0, 1), (2, 0, 2), (0, 1, 3), (1, 1, 4), (2, 1, 5)]  # fmt: skip
    assert joined.data["cross_validation"]["runs_per_fold"] == 2 and len(joined.members) == 5
    assert "mean of the 2 members" in joined.threshold_method and "run 2 times" in joined.architecture
    assert joined.architecture.endswith(ModelCard.load(new_runs[0]).architecture) and joined.training["loss"] == "dice"
    sources = [*first_runs, *new_runs]  # each member's file is the network of its row's run
    files = [joined.weights_path, *joined.member_paths]
    assert [sha256_of(path) for path in files] == [ModelCard.load(path).sha256 for path in sources]
    networks = [ScanModel.load(ModelCard.load(path)) for path in sources]
    x_all, _ = load_slices(list(slices.values()), 32, networks[0].prepare)
    mean_of_all = np.mean([network.mask_probabilities(x_all, flip=False) for network in networks], axis=0)
    in_use = ScanModel.load(ModelCard.load(joined.path))
    assert np.allclose(in_use.mask_probabilities(x_all, flip=False), mean_of_all, atol=1e-5)
    out_of_fold = []  # each slice by the mean of the two runs that held it out
    for fold, names in enumerate(folds):
        x, y = load_slices([slices[name] for name in names], 32, networks[0].prepare)
        probabilities = [networks[run].mask_probabilities(x, flip=joined.test_time_flip) for run in (fold, 3 + fold)]
        out_of_fold += list(zip(np.mean(probabilities, axis=0), y[..., 0] >= 0.5, strict=True))
    recomputed = np.mean([_dice(p >= joined.mask_threshold, t) for p, t in out_of_fold])
    assert joined.metrics["validation"]["out_of_fold_dice_mean"] == pytest.approx(recomputed, abs=1e-6)
    third = [_fold_member(tmp_path / f"d{f}", 12 + f, f, folds) for f in range(3)]
    thrice = ensemble_ct([joined.path, *third], data, tmp_path / "thrice", log=lambda _: None)
    assert thrice.data["cross_validation"]["runs_per_fold"] == 3 and len(thrice.members) == 8
    assert [row["repeat"] for row in thrice.training["members"]] == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    loose = ensemble_ct([*new_runs, *first_runs], data, tmp_path / "loose", log=lambda _: None)  # two sets, loose
    assert loose.data["cross_validation"]["runs_per_fold"] == 2
    refused = tmp_path / "refused"
    with pytest.raises(ValueError, match="one run per fold"):
        ensemble_ct([earlier.path, *new_runs[:2]], data, refused, log=lambda _: None)
    other_loss = [_fold_member(tmp_path / f"e{f}", 15 + f, f, folds, loss="focal") for f in range(3)]
    with pytest.raises(ValueError, match="every set repeats one recipe"):
        ensemble_ct([*new_runs, *other_loss], data, refused, log=lambda _: None)
    swapped = [folds[1], folds[0], folds[2]]
    other_cut = [_fold_member(tmp_path / f"c{f}", 6 + f, f, swapped) for f in range(3)]
    with pytest.raises(ValueError, match="held out other slices"):
        ensemble_ct([earlier.path, *other_cut], data, refused, log=lambda _: None)
    split = ensemble_ct([_member(tmp_path / f"s{seed}", 9 + seed, folds[0]) for seed in range(2)], data,
                        tmp_path / "split", log=lambda _: None)  # fmt: skip
    with pytest.raises(ValueError, match="not of cross-validation folds"):
        ensemble_ct([split.path, *new_runs], data, refused, log=lambda _: None)
