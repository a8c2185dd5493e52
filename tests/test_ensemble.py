"""Classifier ensembles: one flat network whose logits are its members' mean, its Grad-CAM, and the deployment
of the start whose seed runs have the better mean validation score."""

from __future__ import annotations

import numpy as np
import pytest

from core.models.cards import ModelCard, sha256_of
from core.models.networks import ENSEMBLE_FEATURES, build_classifier, merged_classifier
from core.models.scan_model import ScanModel
from tests.helpers import make_chest_set, make_model


def _networks(count: int, classes: int = 3):
    """Tiny classifiers with different random weights and batch-norm statistics."""
    rng = np.random.default_rng(7)
    networks = []
    for index in range(count):
        network = build_classifier((32, 32, 1), classes, widths=(4, 8, 8), name=f"net{index}")
        for layer in network.layers:
            if layer.weights:
                layer.set_weights([rng.normal(0.5 if "bn" in layer.name else 0.0, 0.3, w.shape).astype(np.float32)
                                   for w in layer.get_weights()])  # fmt: skip
            if "bn" in layer.name:  # positive variances
                gamma, beta, mean, variance = layer.get_weights()
                layer.set_weights([gamma, beta, mean, np.abs(variance) + 0.1])
        networks.append(network)
    return networks


def test_a_merged_ensemble_gives_the_mean_of_its_members_logits_as_one_flat_network(tmp_path):
    import keras

    networks = _networks(3)
    merged = merged_classifier(networks, name="three")
    batch = np.random.default_rng(0).random((5, 32, 32, 1), dtype=np.float32)
    expected = np.mean([network.predict_on_batch(batch) for network in networks], axis=0)
    np.testing.assert_allclose(merged.predict_on_batch(batch), expected, atol=1e-5)
    assert not any(isinstance(layer, keras.Model) for layer in merged.layers)  # flat: Grad-CAM reads any layer
    assert merged.get_layer(ENSEMBLE_FEATURES).output.shape[-1] == 3 * 8
    merged.save(tmp_path / "three.keras")
    reloaded = keras.models.load_model(tmp_path / "three.keras", compile=False, safe_mode=True)
    np.testing.assert_allclose(reloaded.predict_on_batch(batch), expected, atol=1e-5)
    with pytest.raises(ValueError, match="two or more"):
        merged_classifier(networks[:1])


def test_the_heatmap_of_a_network_merged_with_itself_is_that_networks_heatmap(tmp_path):
    """Two copies: each member's gradient is half the network's, over twice the channels, so Grad-CAM over
    `ensemble_features` equals the network's own Grad-CAM at the same feature maps (the layer before pooling)."""
    from core.explain.gradcam import class_activation_maps

    card = make_model(tmp_path)
    single = ScanModel.load(card, tmp_path)
    single.card.cam_layer = single.keras_model.get_layer("gap").input._keras_history.operation.name
    pair = ScanModel(ModelCard.from_dict({**card.to_dict(), "cam_layer": ENSEMBLE_FEATURES}),
                     merged_classifier([single.keras_model, single.keras_model]))  # fmt: skip
    batch = np.random.default_rng(1).random((2, 32, 32, 1), dtype=np.float32)
    for method in ("gradcam", "gradcam++"):
        np.testing.assert_allclose(class_activation_maps(pair, batch, "PNEUMONIA", method),
                                   class_activation_maps(single, batch, "PNEUMONIA", method), atol=1e-4)  # fmt: skip


def test_a_card_with_classifier_members_loads_as_one_merged_network(tmp_path):
    from core.models.cards import member_file, write_members

    cards = []
    for index, network in enumerate(_networks(2, classes=2)):
        card = make_model(tmp_path, name=f"run{index}")
        network.save(tmp_path / card.weights)
        card.sha256 = sha256_of(tmp_path / card.weights)
        card.save()
        cards.append(card)
    members = [{"weights": member_file("both", index)} for index in range(2)]
    ensemble = write_members(cards, members, tmp_path / "out")
    ensemble.name, ensemble.cam_layer = "both", ENSEMBLE_FEATURES
    ensemble.save(tmp_path / "out" / "both.json")
    model = ScanModel.load("both", tmp_path / "out")
    batch = np.random.default_rng(2).random((3, 32, 32, 1), dtype=np.float32)
    runs = [ScanModel.load(card, tmp_path).logits(batch) for card in cards]
    np.testing.assert_allclose(model.logits(batch), np.mean(runs, axis=0), atol=1e-5)
    (tmp_path / "out" / "both.m1.keras").write_bytes(b"changed")
    with pytest.raises(Exception, match="sha256"):
        ScanModel.load("both", tmp_path / "out")


@pytest.mark.slow
def test_the_start_with_the_better_mean_validation_score_is_deployed_as_the_mean_of_its_runs(tmp_path):
    from core.checks.deploy import deploy_best_start_mean, validation_score
    from core.explain.gradcam import heatmap
    from core.training import classifier
    from core.training.ensemble import EnsembleError, average_classifiers

    data = make_chest_set(tmp_path / "data", per_class=12)
    runs, weights = tmp_path / "runs", tmp_path / "weights"
    common = {"size": 32, "epochs": 1, "batch_size": 8, "widths": (8, 16), "log": lambda _: None, "split_seed": 0}
    backbone = classifier.train_classifier("pneumonia", data, tmp_path / "start", name="backbone", **common)
    cards = [classifier.train_classifier("pneumonia", data, runs, name=f"pneumonia-scratch-s{seed}", seed=seed,
                                         **common) for seed in (1, 2)]  # fmt: skip
    cards += [classifier.train_classifier("pneumonia", data, runs, name=f"pneumonia-finetuned-s{seed}", seed=seed,
                                          init_from=backbone.weights_path, **common) for seed in (1, 2)]  # fmt: skip
    means = {v: np.mean([validation_score(c) for c in cards if c.variant == v]) for v in ("scratch", "fine-tuned")}
    winner = "scratch" if round(means["scratch"], 4) >= round(means["fine-tuned"], 4) else "fine-tuned"  # tie: first
    assert cards[0].data["split_seed"] == 0 and cards[0].data["validation_fraction"] == 0.15

    weights.mkdir()
    deployed = deploy_best_start_mean([str(card.path) for card in cards], data, weights, log=lambda _: None)
    chosen = [card for card in cards if card.variant == winner]
    assert deployed.name == "pneumonia" and deployed.deployed and deployed.variant == winner
    assert deployed.training["deployed_from"] == [card.name for card in chosen]
    selection = deployed.training["selection"]
    assert f"{means[winner]:.4f}" in selection and "test set played no part" in selection
    assert [m["seed"] for m in deployed.training["members"]] == [1, 2]
    assert deployed.sha256 == chosen[0].sha256 and deployed.members[0]["sha256"] == chosen[1].sha256
    assert 0 < deployed.threshold < 1 and deployed.metrics["validation"]["n"] == chosen[0].data["n_validation"]

    model = ScanModel.load("pneumonia", weights)
    image = np.random.default_rng(3).random((64, 64), dtype=np.float32)
    prepared = model.prepare(image)[np.newaxis]
    members = [ScanModel.load(card).logits(prepared) for card in chosen]
    np.testing.assert_allclose(model.logits(prepared), np.mean(members, axis=0), atol=1e-5)
    assert heatmap(model, image).shape == image.shape

    with pytest.raises(SystemExit, match="two or more runs of each"):
        deploy_best_start_mean([str(card.path) for card in cards[:3]], data, weights, log=lambda _: None)
    with pytest.raises(EnsembleError, match="start"):
        average_classifiers([cards[0], cards[2]], data, tmp_path / "x", "mixed", "", log=lambda _: None)
    with pytest.raises(EnsembleError, match="seed"):
        average_classifiers([cards[0], cards[0]], data, tmp_path / "x", "same", "", log=lambda _: None)


def test_the_start_with_the_higher_mean_wins_and_a_tie_keeps_the_start_in_use():
    from core.checks.deploy import choose_start

    assert choose_start({"imagenet": [0.80, 0.70], "fine-tuned": [0.76, 0.76, 0.77]}) == "fine-tuned"
    assert choose_start({"imagenet": [0.95, 0.6], "fine-tuned": [0.76, 0.76]}) == "imagenet"  # a mean of 0.775
    tie = {"fine-tuned": [0.8, 0.8, 0.8], "imagenet": [0.8, 0.8]}  # sum / 3 is 0.8000000000000002 in floats
    assert choose_start(tie, in_use="imagenet") == "imagenet"
    assert choose_start(tie) == "fine-tuned"  # no start in use among them: the first listed
    assert choose_start({"imagenet": [0.80001, 0.8], "fine-tuned": [0.80004, 0.8]}, in_use="imagenet") == "imagenet"


def test_the_validation_split_of_a_run_is_read_from_its_card():
    from core.training.ensemble import EnsembleError, split_of

    card = make_model_card_stub({"split_seed": 3, "validation_fraction": 0.2})
    assert split_of(card) == (3, 0.2)
    older = make_model_card_stub({"split": "test = 20% held out (seed 0); validation = 15% of the rest (seed 7); ..."})
    assert split_of(older) == (7, 0.15)  # the validation clause's seed, not the test part's
    kermany = make_model_card_stub({"split": "validation = 15% of patients (stratified, seed 0); no patient in both"})
    assert split_of(kermany) == (0, 0.15)
    with pytest.raises(EnsembleError, match="which seed"):
        split_of(make_model_card_stub({"split": "by hand"}))


def make_model_card_stub(data: dict) -> ModelCard:
    from core.models.cards import InputSpec

    return ModelCard(name="run", task="covid", title="t", modality="chest-xray", weights="run.keras",
                     classes=["Normal", "COVID"], input=InputSpec(8, 8), preprocessing=[], data=data)  # fmt: skip
