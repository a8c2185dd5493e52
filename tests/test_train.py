"""The training and evaluation CLIs, end to end on a tiny generated data set (seconds, not hours)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from core.cli import evaluate, train
from core.data.chest import chest_patient_id, list_labelled, pneumonia_kind, split_by_patient
from core.models.cards import ModelCard, sha256_of
from core.training import classifier
from tests.helpers import make_chest_set, synthetic_chest


def test_patient_ids_and_kinds_from_kermany_names():
    assert chest_patient_id("person1000_bacteria_2931.jpeg") == "person1000"
    assert chest_patient_id("IM-0115-0001.jpeg") == "IM-0115"
    assert chest_patient_id("NORMAL2-IM-1427-0001.jpeg") == "NORMAL2-IM-1427"
    assert pneumonia_kind("person1_virus_6.jpeg") == "virus" and pneumonia_kind("IM-0001-0001.jpeg") == "normal"


def test_split_never_puts_a_patient_on_both_sides(tmp_path):
    samples = list_labelled(make_chest_set(tmp_path / "data"), ["NORMAL", "PNEUMONIA"])
    train_part, validation = split_by_patient(samples, 0.25, seed=3)
    assert {s.patient for s in train_part}.isdisjoint({s.patient for s in validation})
    assert {s.label for s in validation} == {0, 1}
    assert len(train_part) + len(validation) == len(samples)


@pytest.mark.slow
def test_train_then_evaluate_cli(tmp_path, capsys):
    data = make_chest_set(tmp_path / "data")
    out = tmp_path / "weights"
    args = ["pneumonia", "--data", str(data), "--out", str(out), "--epochs", "3", "--size", "48"]
    seeds = ["--seed", "1", "--split-seed", "0"]  # another run on the seed-0 split
    assert train.main([*args, "--widths", "8,8,16", "--batch-size", "8", "--patience", "3", *seeds]) == 0
    card = ModelCard.load(out / "pneumonia.json")
    assert card.sha256 == sha256_of(out / "pneumonia.keras")
    assert card.training["seed"] == 1 and "seed 0" in card.data["split"]
    assert 0 < card.threshold < 1 and card.temperature > 0
    assert "Youden" in card.threshold_method and card.metrics["validation"]["n"] > 0
    assert card.data["n_train"] + card.data["n_validation"] == 48

    report = tmp_path / "eval.json"
    assert (
        evaluate.main(["pneumonia", "--data", str(data), "--out", str(report), "--weights", str(out), "--update-card"])
        == 0
    )
    result = json.loads(report.read_text())
    for key in (
        "n",
        "accuracy",
        "sensitivity",
        "specificity",
        "auc",
        "confusion_matrix",
        "latency_ms_per_image_batched",
    ):
        assert key in result
    assert result["n"] == 48
    assert ModelCard.load(out / "pneumonia.json").metrics["test"]["accuracy"] == result["accuracy"]


def test_covid_holdout_is_fixed_stratified_and_disjoint(tmp_path):
    from core.data.chest import covid_holdout, list_covid

    for folder in ("COVID", "Normal"):
        (tmp_path / folder).mkdir()
        for index in range(20):
            Image.fromarray(synthetic_chest(32, seed=index)).save(tmp_path / folder / f"{folder}-{index}.png")
    samples = list_covid(tmp_path)
    assert len({s.patient for s in samples}) == 40  # no patient ids: every file stands alone
    development, test = covid_holdout(samples)
    assert len(test) == 8 and {s.label for s in test} == {0, 1}
    assert {s.path for s in development}.isdisjoint({s.path for s in test})
    assert [s.path for s in covid_holdout(samples)[1]] == [s.path for s in test]


@pytest.mark.slow
def test_fine_tuning_deploying_the_best_on_validation_and_the_transfer_table(tmp_path):
    from core.checks.deploy import deploy
    from core.models.cards import list_cards, transfer_table
    from core.models.scan_model import ScanModel

    data = make_chest_set(tmp_path / "data", per_class=12)
    out = tmp_path / "weights"
    common = {"size": 32, "epochs": 1, "batch_size": 8, "widths": (8, 16), "log": lambda _: None}
    scratch = classifier.train_classifier("pneumonia", data, out, name="pneumonia-scratch", **common)
    tuned = classifier.train_classifier(
        "pneumonia", data, out, name="pneumonia-finetuned", init_from=out / "pneumonia-scratch.keras", **common
    )
    assert scratch.variant == "scratch" and tuned.variant == "fine-tuned"
    assert "fine-tuned from pneumonia-scratch.keras" in tuned.architecture

    deployed = deploy(["pneumonia-scratch", "pneumonia-finetuned"], out)
    best = max((scratch, tuned), key=lambda card: card.metrics["validation"]["auc"])
    assert deployed.name == "pneumonia" and deployed.sha256 == best.sha256
    assert deployed.training["deployed_from"] == best.name
    assert ScanModel.load("pneumonia", out).card.deployed  # the copy matches its card's sha256
    cards = list_cards(out)
    assert not cards["pneumonia-scratch"].deployed and not cards["pneumonia-finetuned"].deployed
    rows = transfer_table(cards)
    assert sorted(row["variant"] for row in rows) == ["fine-tuned", "scratch"]
    assert [row["model"] for row in rows if row["deployed"]] == ["pneumonia"]

    runs = tmp_path / "runs"  # a seed run outside weights/, named by its card's path, wins on validation
    runs.mkdir()
    seed_run = ModelCard.from_dict(scratch.to_dict())  # other weights than either candidate in weights/ below
    seed_run.name, seed_run.weights = "pneumonia-finetuned-s9", "pneumonia-finetuned-s9.keras"
    seed_run.metrics = {**scratch.metrics, "validation": {**scratch.metrics["validation"], "auc": 1.01}}
    shutil.copyfile(scratch.weights_path, runs / seed_run.weights)
    seed_run.save(runs / "pneumonia-finetuned-s9.json")
    deployed = deploy(["pneumonia-finetuned", str(runs / "pneumonia-finetuned-s9.json")], out)
    assert deployed.training["deployed_from"] == "pneumonia-finetuned-s9" and "1.0100" in deployed.training["selection"]
    assert deployed.training["deployed_from_card"] == str(runs / "pneumonia-finetuned-s9.json")
    assert sha256_of(out / "pneumonia.keras") == scratch.sha256 != tuned.sha256
    assert ScanModel.load("pneumonia", out).card.sha256 == scratch.sha256
    with pytest.raises(SystemExit, match="no card"):
        deploy(["pneumonia-scratch", str(runs / "gone.json")], out)
    seed_run.name = "pneumonia-scratch"  # the same name as a candidate in weights/
    seed_run.save(runs / "pneumonia-scratch.json")
    with pytest.raises(SystemExit, match="distinct names"):
        deploy(["pneumonia-scratch", str(runs / "pneumonia-scratch.json")], out)


def test_copy_backbone_copies_every_layer_but_the_logits(tmp_path):
    from core.models.networks import build_classifier

    source = build_classifier((32, 32, 1), 5, widths=(8, 16), name="source")
    source.save(tmp_path / "backbone.keras")
    target = build_classifier((32, 32, 1), 2, widths=(8, 16), name="target")
    copied = classifier.copy_backbone(tmp_path / "backbone.keras", target)
    assert copied == sum(1 for layer in target.layers if layer.weights and layer.name != "logits")
    np.testing.assert_array_equal(target.get_layer("last_conv").get_weights()[0],
                                  source.get_layer("last_conv").get_weights()[0])  # fmt: skip


def test_pretraining_leaves_out_every_validation_and_test_image():
    from core.data.chest import covid_holdout, list_covid, list_pneumonia_types
    from core.training.pretrain import pretraining_split
    from tests.helpers import data_path

    chest = data_path("chest_xray", "train")
    covid = data_path("covid_radiography")
    used = {s.path for s in pretraining_split(chest.parent.parent)[0]}
    for listing in (list_labelled(chest, ["NORMAL", "PNEUMONIA"]), list_pneumonia_types(chest)):
        assert used.isdisjoint(s.path for s in split_by_patient(listing, 0.15, 0)[1])
    development, test = covid_holdout(list_covid(covid))
    assert used.isdisjoint(s.path for s in test)
    assert used.isdisjoint(s.path for s in split_by_patient(development, 0.15, 0)[1])
    assert not any("test" in path.parent.parent.name for path in used)
    assert len(used) > 5000


def test_transfer_sentence_names_each_start_and_the_one_in_use():
    from core.checks.deploy import transfer_sentence

    scratch = {"variant": "scratch", "deployed": False, "test_auc": 0.97}
    tuned = {"variant": "fine-tuned", "deployed": False, "test_auc": 0.96}
    imagenet = {"variant": "imagenet", "deployed": True, "test_auc": 0.98}
    sentence = transfer_sentence([imagenet, tuned, scratch])
    assert "ImageNet (EfficientNet-Lite0) 0.980" in sentence
    assert "our chest backbone (compact CNN) 0.960" in sentence and "random (compact CNN) 0.970" in sentence
    assert "Best on test: ImageNet (EfficientNet-Lite0); in use: ImageNet (EfficientNet-Lite0), chosen on" in sentence
    worse = transfer_sentence([{**imagenet, "test_auc": 0.95}, tuned, scratch])
    assert "Best on test: random (compact CNN); in use: ImageNet (EfficientNet-Lite0)" in worse
    three_class = [
        {"variant": "scratch", "deployed": True, "test_macro_f1": 0.8},
        {"variant": "fine-tuned", "deployed": False, "test_macro_f1": 0.85},
    ]
    assert "macro-F1" in transfer_sentence(three_class)
    assert transfer_sentence([scratch]) == ""
    seed_run = {"variant": "imagenet", "deployed": False, "test_auc": 0.99, "seed": 3}  # two runs of one start
    two = transfer_sentence([{**imagenet, "seed": 0}, seed_run, tuned, scratch])
    assert "ImageNet (EfficientNet-Lite0) (seed 0) in use 0.980, ImageNet (EfficientNet-Lite0) (seed 3) 0.990" in two
    assert "Best on test: ImageNet (EfficientNet-Lite0) (seed 3); in use" in two and "one run each" not in two
    assert "chosen on validation" in two


@pytest.mark.slow
def test_evaluating_covid_on_another_folder_uses_every_image(tmp_path, capsys):
    """On a folder that is not the training data, the default is all images (an external source of 44 images
    once scored 9 because a seeded 20% 'test' split was taken from it)."""
    import json

    from core.cli import evaluate

    for folder in ("COVID", "Normal"):
        (tmp_path / "external" / folder).mkdir(parents=True)
        for index in range(22):
            Image.fromarray(synthetic_chest(64, seed=index)).save(tmp_path / "external" / folder / f"{index}.png")
    out = tmp_path / "external.json"
    assert evaluate.main(["covid", "--data", str(tmp_path / "external"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["n"] == 44
    assert "split: all" in capsys.readouterr().out
