"""The seed study: runs of one start on one split are grouped with the committed run, others are named and left out."""

from __future__ import annotations

import json

import pytest

from core.checks import seeds
from core.models.cards import InputSpec, ModelCard


def _card(name: str, variant: str, seed: int, auc: float, split: str = "seed 0 split", deployed=True) -> ModelCard:
    return ModelCard(name=name, task="pneumonia", title="t", modality="chest-xray", weights=f"{name}.keras",
                     classes=["NORMAL", "PNEUMONIA"], input=InputSpec(8, 8), preprocessing=[], variant=variant,
                     deployed=deployed, data={"split": split}, training={"seed": seed},
                     metrics={"validation": {"auc": 0.99}, "test": {"auc": auc, "accuracy": auc - 0.1}})  # fmt: skip


def test_seed_groups_spread_and_what_is_left_out(tmp_path):
    committed = {c.name: c for c in (_card("pneumonia-imagenet", "imagenet", 0, 0.97, deployed=False),
                                     _card("pneumonia", "imagenet", 0, 0.97),  # the deployed copy
                                     _card("pneumonia-scratch", "scratch", 0, 0.95, deployed=False))}  # fmt: skip
    extra = [_card("pneumonia-imagenet-s1", "imagenet", 1, 0.98), _card("pneumonia-imagenet-s2", "imagenet", 2, 0.96),
             _card("pneumonia-imagenet-s3", "imagenet", 3, 0.50, split="seed 3 split")]  # fmt: skip
    result = seeds.seed_groups(committed, [*extra, *committed.values()])  # the committed folder given again
    by_start = {group["variant"]: group for group in result["groups"]}
    imagenet = by_start["imagenet"]
    assert imagenet["runs"] == ["pneumonia-imagenet", "pneumonia-imagenet-s1", "pneumonia-imagenet-s2"]
    assert imagenet["seeds"] == [0, 1, 2] and imagenet["figures"]["test_auc"]["mean"] == pytest.approx(0.97)
    assert imagenet["figures"]["test_auc"]["std"] == pytest.approx(0.01)
    assert by_start["scratch"]["n_runs"] == 1 and by_start["scratch"]["figures"]["test_auc"]["std"] is None
    assert result["left_out"] == ["pneumonia-imagenet-s3"]
    other_rate = _card("pneumonia-imagenet-s4", "imagenet", 4, 0.99)
    other_rate.training["optimiser"] = "AdamW lr 0.01"  # not a seed rerun: another learning rate
    assert seeds.seed_groups(committed, [other_rate])["left_out"] == ["pneumonia-imagenet-s4"]
    assert "test_macro_f1" not in imagenet["figures"]  # a figure the runs do not have is not invented


def test_seeds_cli_writes_the_groups(tmp_path, capsys):
    weights, runs = tmp_path / "weights", tmp_path / "runs"
    for folder, card in ((weights, _card("pneumonia-imagenet", "imagenet", 0, 0.97, deployed=False)),
                         (runs, _card("pneumonia-imagenet-s1", "imagenet", 1, 0.99))):  # fmt: skip
        folder.mkdir(exist_ok=True)
        (folder / card.weights).write_bytes(b"")
        card.save(folder / f"{card.name}.json")
    out = tmp_path / "seeds.json"
    assert seeds.main([str(runs), "--weights", str(weights), "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    group = written["groups"][0]
    assert group["n_runs"] == 2 and group["figures"]["test_auc"]["mean"] == pytest.approx(0.98)
    assert "2 run(s)" in capsys.readouterr().out and written["command"].startswith("python -m core.checks.seeds")


def test_keep_carries_over_groups_whose_run_cards_are_gone(tmp_path):
    committed = {c.name: c for c in (_card("pneumonia-imagenet", "imagenet", 0, 0.97, deployed=False),
                                     _card("pneumonia-scratch", "scratch", 0, 0.95, deployed=False))}  # fmt: skip
    earlier = seeds.seed_groups(committed, [_card("pneumonia-imagenet-s1", "imagenet", 1, 0.99)])
    earlier.update(date="2026-11-27", command="python -m core.checks.seeds runs/old")
    now = seeds.seed_groups(committed, [])  # the s1 card is gone: imagenet has one run, scratch one as before
    kept = seeds.keep_recorded(now, earlier, "weights/seeds.json")
    by_start = {group["variant"]: group for group in now["groups"]}
    assert kept == ["pneumonia / ImageNet"] and by_start["imagenet"]["n_runs"] == 2
    assert by_start["imagenet"]["kept_from"]["command"] == "python -m core.checks.seeds runs/old"
    assert "kept_from" not in by_start["scratch"]  # rebuilt from as many runs: today's figures
    rebuilt = seeds.seed_groups(committed, [_card("pneumonia-imagenet-s1", "imagenet", 1, 0.99),
                                            _card("pneumonia-imagenet-s2", "imagenet", 2, 0.98)])  # fmt: skip
    assert seeds.keep_recorded(rebuilt, earlier, "weights/seeds.json") == []  # more runs now: nothing kept
    assert {group["variant"]: group for group in rebuilt["groups"]}["imagenet"]["n_runs"] == 3
