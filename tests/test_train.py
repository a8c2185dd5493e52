"""The training and evaluation CLIs, end to end on a tiny generated data set (seconds, not hours)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import evaluate, train
from core.cards import ModelCard, sha256_of
from core.data import chest_patient_id, list_labelled, pneumonia_kind, split_by_patient
from tests.helpers import synthetic_chest


def make_dataset(root: Path, per_class: int = 16) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("NORMAL", "PNEUMONIA"):
        (root / folder).mkdir(parents=True)
    for index in range(per_class):
        normal = synthetic_chest(64, seed=index).astype(np.float32)
        sick = normal.copy()
        sick[20:44, 12:52] += 90 + rng.normal(0, 10, (24, 40))  # opaque lower lungs
        Image.fromarray(np.clip(normal, 0, 255).astype(np.uint8)).save(root / "NORMAL" / f"IM-{index:04d}-0001.png")
        for view in (1, 2):  # two images of the same patient: must stay on one side of the split
            Image.fromarray(np.clip(sick, 0, 255).astype(np.uint8)).save(
                root / "PNEUMONIA" / f"person{index}_{'bacteria' if index % 2 else 'virus'}_{view}.png"
            )
    return root


def test_patient_ids_and_kinds_from_kermany_names():
    assert chest_patient_id("person1000_bacteria_2931.jpeg") == "person1000"
    assert chest_patient_id("IM-0115-0001.jpeg") == "IM-0115"
    assert chest_patient_id("NORMAL2-IM-1427-0001.jpeg") == "NORMAL2-IM-1427"
    assert pneumonia_kind("person1_virus_6.jpeg") == "virus" and pneumonia_kind("IM-0001-0001.jpeg") == "normal"


def test_split_never_puts_a_patient_on_both_sides(tmp_path):
    samples = list_labelled(make_dataset(tmp_path / "data"), ["NORMAL", "PNEUMONIA"])
    train_part, validation = split_by_patient(samples, 0.25, seed=3)
    assert {s.patient for s in train_part}.isdisjoint({s.patient for s in validation})
    assert {s.label for s in validation} == {0, 1}
    assert len(train_part) + len(validation) == len(samples)


@pytest.mark.slow
def test_train_then_evaluate_cli(tmp_path, capsys):
    data = make_dataset(tmp_path / "data")
    out = tmp_path / "weights"
    args = ["pneumonia", "--data", str(data), "--out", str(out), "--epochs", "3", "--size", "48"]
    assert train.main([*args, "--widths", "8,8,16", "--batch-size", "8", "--patience", "3"]) == 0
    card = ModelCard.load(out / "pneumonia.json")
    assert card.sha256 == sha256_of(out / "pneumonia.keras")
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
