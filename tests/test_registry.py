"""The table of tasks (`core.tasks.registry`) as the CLIs use it: per-task defaults, and splits that are refused or
named so that a card's "test" figures come only from held-out data."""

from __future__ import annotations

import json

import pytest

from core.tasks.registry import TASKS, questions, task


def recording(real, seen: dict):
    """A stand-in for a training function that records its keywords and, like the real one, refuses a keyword
    the real one does not take (a stub taking **kwargs would hide such a call)."""
    import inspect

    signature = inspect.signature(real)

    def stub(*args, **kwargs):
        signature.bind(*args, **kwargs)
        seen.update(kwargs)

    return stub


@pytest.mark.parametrize(("task", "given", "expected"), [("ct-infection", [], 40), ("ct-lungs", [], 40),
                                                         ("ct-infection", ["--patience", "8"], 8)])  # fmt: skip
def test_the_training_cli_applies_each_tasks_defaults(monkeypatch, tmp_path, task, given, expected):
    """CT trains with patience 40 unless told otherwise (the table of tasks' default); the others with 8."""
    import core.training.ct as ct_training
    from core.cli import train

    seen: dict = {}
    monkeypatch.setattr(ct_training, "train_ct", recording(ct_training.train_ct, seen))
    monkeypatch.setattr(ct_training, "tune_outline_margin", lambda *args, **kwargs: None)
    (tmp_path / "ct-infection.json").write_text("{}")  # ct-lungs checks that the infection card is there
    assert train.main([task, "--data", str(tmp_path), "--out", str(tmp_path), *given, "--split-seed", "3"]) == 0
    assert seen["patience"] == expected and seen["target"] == ("lungs" if task == "ct-lungs" else "infection")
    assert seen["split_seed"] == 3


@pytest.mark.parametrize(("given", "expected"), [([], "resunet"), (["--architecture", "lite0-unet"], "lite0-unet")])
@pytest.mark.parametrize("task", ["ct-infection", "mri-segmentation"])
def test_the_segmenters_train_the_architecture_asked_for(monkeypatch, tmp_path, task, given, expected):
    """`--architecture lite0-unet` reaches both segmenters' training; without it they keep the ResUNet."""
    import core.training.ct as ct_training
    import core.training.mri as mri_training
    from core.cli import train

    seen: dict = {}
    monkeypatch.setattr(ct_training, "train_ct", recording(ct_training.train_ct, seen))
    monkeypatch.setattr(mri_training, "train_segmentation", recording(mri_training.train_segmentation, seen))
    monkeypatch.setattr(mri_training, "tune_postprocessing", lambda *args, **kwargs: None)
    monkeypatch.setattr(ct_training, "tune_outline_margin", lambda *args, **kwargs: None)
    argv = [task, "--data", str(tmp_path), "--out", str(tmp_path), "--encoder-blocks", "14", *given]
    assert train.main(argv) == 0
    assert seen["architecture"] == expected and seen["encoder_blocks"] == 14


def test_the_training_cli_writes_its_command_into_the_card(monkeypatch, tmp_path):
    import core.training.mri as mri_training
    from core.cli import train
    from core.models.cards import InputSpec, ModelCard

    card = ModelCard("mri-segmentation", "segmentation", "t", "brain-mri", "m.keras", ["tumour"], InputSpec(8, 8), [])
    card.save(tmp_path / "mri-segmentation.json")
    monkeypatch.setattr(mri_training, "train_segmentation", lambda *args, **kwargs: None)
    monkeypatch.setattr(mri_training, "tune_postprocessing", lambda *args, **kwargs: card)
    assert train.main(["mri-segmentation", "--data", str(tmp_path), "--out", str(tmp_path), "--size", "160"]) == 0
    assert train.main(["mri-segmentation", "--data", str(tmp_path), "--out", str(tmp_path), "--tune-only"]) == 0
    saved = ModelCard.load(tmp_path / "mri-segmentation.json").training
    assert saved["command"].endswith("--size 160") and saved["tune_command"].endswith("--tune-only")


@pytest.mark.parametrize(
    "argv", [["ct-infection", "--tune-only"], ["pneumonia", "--dice", "per-slice"], ["gate", "--resume"]]
)
def test_the_training_cli_refuses_options_a_task_would_ignore(tmp_path, argv):
    from core.cli import train

    with pytest.raises(SystemExit):
        train.main([*argv, "--data", str(tmp_path), "--out", str(tmp_path)])


def test_ct_lungs_asks_for_the_infection_card_before_it_trains(monkeypatch, tmp_path):
    import core.training.ct as ct_training
    from core.cli import train

    trained: list = []
    monkeypatch.setattr(ct_training, "train_ct", lambda *args, **kwargs: trained.append(1))
    with pytest.raises(FileNotFoundError, match="infection"):
        train.main(["ct-lungs", "--data", str(tmp_path), "--out", str(tmp_path)])
    assert not trained


def test_evaluating_a_chest_task_on_a_validation_split_is_refused(tmp_path, capsys):
    from core.cli import evaluate

    with pytest.raises(SystemExit):
        evaluate.main(["pneumonia", "--data", str(tmp_path), "--out", str(tmp_path / "x.json"),
                       "--split", "validation"])  # fmt: skip
    assert "no validation split" in capsys.readouterr().err


def test_evaluating_every_mri_patient_is_not_recorded_as_the_test_split(monkeypatch, tmp_path):
    import core.checks.evaluation as evaluation
    from core.cli import evaluate

    monkeypatch.setattr(evaluation, "mri_patients", lambda model, root, split: ["patient"])
    monkeypatch.setattr(evaluation, "evaluate_segmentation", lambda model, patients: {"dice_mean": 0.5})
    out = tmp_path / "all.json"
    assert evaluate.main(["mri-segmentation", "--data", str(tmp_path), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["split"] == "all"
    named = tmp_path / "external.json"
    args = ["mri-segmentation", "--data", str(tmp_path), "--out", str(named), "--split-name", "external"]
    assert evaluate.main(args) == 0 and json.loads(named.read_text())["split"] == "external"
    held_out = tmp_path / "test.json"
    assert evaluate.main(["mri-segmentation", "--data", str(tmp_path), "--out", str(held_out), "--split", "test"]) == 0
    assert json.loads(held_out.read_text())["split"] == "test"


def test_every_task_has_a_question_a_modality_and_a_fit():
    assert set(TASKS) >= {"pneumonia", "pneumonia-type", "covid", "mri-tumour", "mri-segmentation", "ct-infection",
                          "gate"}  # fmt: skip
    for entry in TASKS.values():
        assert "?" in entry.question and entry.modality in ("chest-xray", "brain-mri", "ct", "any")
        assert callable(entry.fit) and entry.kind in ("classification", "segmentation", "gate", "backbone")
    assert set(questions("chest-xray")) == {"pneumonia", "pneumonia-type", "covid"}
    with pytest.raises(KeyError, match="known"):
        task("no-such-task")
