"""Regression: the committed models on held-out real data must not fall below floors a little under
what was measured (see the cards). Skipped, with the reason, when the data or the model is missing."""

from __future__ import annotations

import pytest

from core.checks.evaluation import evaluate_classifier, evaluate_mri_tumour, evaluate_segmentation, mri_patients
from core.data.chest import list_labelled
from core.models.cards import list_cards
from core.models.scan_model import ScanModel
from tests.helpers import REPO, data_path

CARDS = list_cards()


def needs(name: str):
    return pytest.mark.skipif(name not in CARDS, reason=f"model '{name}' is not committed in weights/")


@pytest.mark.slow
@needs("pneumonia")
def test_pneumonia_on_the_official_test_set():
    samples = list_labelled(data_path("chest_xray", "test"), ["NORMAL", "PNEUMONIA"])
    assert len(samples) == 624
    metrics = evaluate_classifier(ScanModel.load("pneumonia"), samples, progress=False)
    measured = CARDS["pneumonia"].metrics["test"]
    assert metrics["accuracy"] == pytest.approx(measured["accuracy"], abs=0.005)  # the card is reproducible
    # measured 0.881 accuracy, 0.971 AUC (weights/pneumonia.json, the ImageNet start, seed 0); floors a little under
    assert metrics["accuracy"] >= 0.86
    assert metrics["auc"] >= 0.96


@pytest.mark.slow
@needs("mri-segmentation")
def test_mri_segmentation_on_held_out_patients():
    model = ScanModel.load("mri-segmentation")
    patients = mri_patients(model, data_path("lgg_mri"), "test")
    assert len(patients) == len(model.card.data["test_patients"]) > 0
    metrics = evaluate_segmentation(model, patients, progress=False)
    assert metrics["dice_mean"] == pytest.approx(model.card.metrics["test"]["dice_mean"], abs=0.005)
    assert metrics["dice_mean"] >= FLOORS["mri-segmentation"]


@pytest.mark.slow
@needs("mri-tumour")
def test_mri_tumour_on_held_out_patients():
    model = ScanModel.load("mri-tumour")
    metrics = evaluate_mri_tumour(model, mri_patients(model, data_path("lgg_mri"), "test"), progress=False)
    assert metrics["accuracy"] == pytest.approx(model.card.metrics["test"]["accuracy"], abs=0.005)
    assert metrics["accuracy"] >= FLOORS["mri-tumour"]
    recorded = metrics["decision_rule"]
    assert {key: recorded[key] for key in model.card.decision_rule} == model.card.decision_rule  # the rule measured
    recorded_in_card = model.card.metrics["test"]["decision_rule"]
    assert recorded_in_card["threshold"] == model.card.decision_rule["threshold"]


FLOORS = {
    "mri-segmentation": 0.83,  # measured 0.853 (the Lite0 U-Net)
    "mri-tumour": 0.91,  # 0.937, the classifier at its own threshold
    "ct-infection": 0.76,  # 0.781 (the mean of ten cross-validation U-Nets)
    "pneumonia-type": 0.79,  # macro-F1 0.816 (the mean of three chest-backbone runs; single runs: 0.781-0.850)
    "covid": 0.94,  # sensitivity 0.965, specificity 0.985 (seed 3)
    "gate-other": 0.98,  # 0.994 of 1,000 non-medical images rejected
}


@pytest.mark.slow
@needs("ct-infection")
def test_ct_infection_on_the_48_test_slices():
    from core.checks.ct import evaluate_ct
    from core.data.ct import list_ct

    model = ScanModel.load("ct-infection")
    slices = list_ct(data_path("covid_ct_seg", "test"))
    assert len(slices) == 48
    metrics = evaluate_ct(model, slices, progress=False)
    assert metrics["dice_mean"] == pytest.approx(model.card.metrics["test"]["dice_mean"], abs=0.005)
    assert metrics["dice_mean"] >= FLOORS["ct-infection"]


@pytest.mark.slow
@needs("pneumonia-type")
def test_pneumonia_type_on_the_official_test_set():
    from core.data.chest import list_pneumonia_types

    model = ScanModel.load("pneumonia-type")
    samples = list_pneumonia_types(data_path("chest_xray", "test"))
    metrics = evaluate_classifier(model, samples, progress=False)
    assert metrics["macro_f1"] == pytest.approx(model.card.metrics["test"]["macro_f1"], abs=0.005)
    assert metrics["macro_f1"] >= FLOORS["pneumonia-type"]


@pytest.mark.slow
@needs("covid")
def test_covid_on_its_held_out_part():
    from core.data.chest import covid_holdout, list_covid

    model = ScanModel.load("covid")
    samples = covid_holdout(list_covid(data_path("covid_radiography")))[1]
    assert len(samples) == 800
    metrics = evaluate_classifier(model, samples, progress=False)
    measured = model.card.metrics["test"]
    for key in ("sensitivity", "specificity", "auc"):
        assert metrics[key] == pytest.approx(measured[key], abs=0.005)
    assert metrics["sensitivity"] >= FLOORS["covid"] and metrics["specificity"] >= FLOORS["covid"]


@pytest.mark.slow
@needs("gate")
def test_gate_on_held_out_medical_and_non_medical_images():
    from core.checks.gate import evaluate_gate

    model = ScanModel.load("gate")
    metrics = evaluate_gate(model, data_path(), progress=False)
    measured = model.card.metrics["test"]
    assert metrics["false_rejection_rate_all_medical"] == pytest.approx(
        measured["false_rejection_rate_all_medical"], abs=0.002
    )
    assert metrics["other"]["rejection_rate"] == pytest.approx(measured["other"]["rejection_rate"], abs=0.005)
    assert metrics["false_rejection_rate_all_medical"] <= 0.01  # the goal
    assert metrics["other"]["rejection_rate"] >= FLOORS["gate-other"]


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / "weights" / "shortcut.json").exists(), reason="no shortcut check committed")
def test_shortcut_check_is_reproduced():
    import json

    from core.checks.shortcut import run_check

    committed = json.loads((REPO / "weights" / "shortcut.json").read_text())
    result = run_check(data_path())
    for name, entry in committed["models"].items():
        for group, answers in entry["on_other_source"].items():
            assert result["models"][name]["on_other_source"][group]["answers"] == answers["answers"]


@pytest.mark.skipif(not (REPO / "weights" / "study.json").exists(), reason="no study results committed")
def test_study_results_are_consistent_with_their_runs():
    import json

    from core.checks.study import summarise

    study = json.loads((REPO / "weights" / "study.json").read_text())
    folds = study["config"]["folds"]
    assert study["summary"] == summarise(study["runs"], folds)
    pairs: dict[tuple[str, str], list[dict]] = {}
    for run in study["runs"]:
        pairs.setdefault((run["preprocessing"], run["family"]), []).append(run)
    for runs in pairs.values():
        assert len({r["fold"] for r in runs}) == len(runs) <= folds
        if len(runs) == folds:  # every image held out exactly once
            assert sum(r["n_test"] for r in runs) == study["n_images"]
