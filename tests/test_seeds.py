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


def test_keep_adds_recorded_runs_whose_cards_are_gone_run_by_run(tmp_path, capsys):
    committed = {c.name: c for c in (_card("pneumonia-imagenet", "imagenet", 0, 0.97, deployed=False),
                                     _card("pneumonia-scratch", "scratch", 0, 0.95, deployed=False))}  # fmt: skip
    s1, s2 = _card("pneumonia-imagenet-s1", "imagenet", 1, 0.99), _card("pneumonia-imagenet-s2", "imagenet", 2, 0.95)
    earlier = seeds.seed_groups(committed, [s1, s2])
    earlier.update(date="2026-11-27", command="python -m core.checks.seeds runs/old")
    committed["pneumonia-imagenet"] = _card("pneumonia-imagenet", "imagenet", 0, 0.93, deployed=False)  # retrained
    now = seeds.seed_groups(committed, [s2])  # s1's card is gone, s2's is here
    kept = seeds.keep_recorded(now, earlier, "weights/seeds.json")
    imagenet = {group["variant"]: group for group in now["groups"]}["imagenet"]
    assert kept == ["pneumonia / ImageNet: pneumonia-imagenet-s1"]
    assert imagenet["runs"] == ["pneumonia-imagenet", "pneumonia-imagenet-s2", "pneumonia-imagenet-s1"]
    assert imagenet["seeds"] == [0, 2, 1] and imagenet["recorded_runs"] == ["pneumonia-imagenet-s1"]
    assert imagenet["figures"]["test_auc"]["values"] == pytest.approx([0.93, 0.95, 0.99])  # today's seed 0, not 0.97
    assert imagenet["kept_from"]["command"] == "python -m core.checks.seeds runs/old"
    assert "kept_from" not in {group["variant"]: group for group in now["groups"]}["scratch"]
    rows = seeds.seed_table(now, "pneumonia")
    assert any("1 as recorded 2026-11-27" in row["runs (seeds)"] for row in rows)
    assert "test AUC" in rows[0] and "test macro-F1" not in rows[0]  # a column no start has is left out
    del committed["pneumonia-scratch"]  # a start with no committed run is not brought back from the record
    after = seeds.seed_groups(committed, [s2])
    assert seeds.keep_recorded(after, earlier, "weights/seeds.json") == ["pneumonia / ImageNet: pneumonia-imagenet-s1"]
    assert [group["variant"] for group in after["groups"]] == ["imagenet"]
    weights, out = tmp_path / "weights", tmp_path / "seeds.json"  # the CLI path
    weights.mkdir()
    card = committed["pneumonia-imagenet"]
    (weights / card.weights).write_bytes(b"")
    card.save(weights / f"{card.name}.json")
    (tmp_path / "old.json").write_text(json.dumps(earlier))
    assert seeds.main(["--weights", str(weights), "--keep", str(tmp_path / "old.json"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["groups"][0]["n_runs"] == 3 and "as recorded in" in capsys.readouterr().out


def test_the_readme_tables_take_a_single_run_and_a_card_not_yet_evaluated():
    from core.checks.deploy import transfer_markdown
    from core.models.cards import transfer_table

    deployed = _card("pneumonia", "imagenet", 1, 0.97)
    deployed.training["deployed_from"] = "pneumonia-imagenet-s1"
    committed = {"pneumonia-imagenet": _card("pneumonia-imagenet", "imagenet", 0, 0.96, deployed=False),
                 "pneumonia": deployed}  # fmt: skip
    result = seeds.seed_groups(committed, [_card("pneumonia-imagenet-s1", "imagenet", 1, 0.97)])
    tables = seeds.seed_markdown(result, committed)
    assert "seed 0 / 1 (in use)" in tables and "(2 runs)" in tables  # marked by the run's name
    assert seeds.seed_markdown(seeds.seed_groups(committed, []), committed) == ""  # one run per start: no spread
    fresh = _card("pneumonia-scratch", "scratch", 0, 0.9, deployed=False)
    fresh.metrics, fresh.sha256 = {}, "another network"  # trained, not yet evaluated
    cards = {**committed, "pneumonia-scratch": fresh}
    table = transfer_markdown(transfer_table(cards), cards)
    assert "| pneumonia (–) | random (compact CNN) |  |" in table and table.count("–") >= 5


def test_the_readme_tables_name_the_runs_of_a_mean_in_use():
    from core.checks.deploy import transfer_markdown, transfer_sentence
    from core.models.cards import transfer_table

    mean = _card("pneumonia", "imagenet", 1, 0.98)
    mean.sha256, mean.members = "first run", [{"weights": "pneumonia.m1.keras", "sha256": "second run"}]
    mean.training = {"deployed_from": ["pneumonia-imagenet-s1", "pneumonia-imagenet-s2"],
                     "members": [{"seed": 1}, {"seed": 2}]}  # fmt: skip
    committed = {"pneumonia-imagenet": _card("pneumonia-imagenet", "imagenet", 0, 0.96, deployed=False),
                 "pneumonia": mean}  # fmt: skip
    runs = [_card(f"pneumonia-imagenet-s{seed}", "imagenet", seed, 0.97, deployed=False) for seed in (1, 2)]
    tables = seeds.seed_markdown(seeds.seed_groups(committed, runs), committed)
    assert "seed 0 / 1 (in the mean in use) / 2 (in the mean in use) |" in tables and "(3 runs)" in tables
    table = transfer_markdown(transfer_table(committed), committed)
    assert "ImageNet (EfficientNet-Lite0), mean of seeds 1 / 2 | **yes** |" in table
    assert "ImageNet (EfficientNet-Lite0), seed 0 |  |" in table
    sentence = transfer_sentence(transfer_table(committed))
    assert "ImageNet (EfficientNet-Lite0) (mean of 2 runs) in use 0.980" in sentence, sentence
    assert "ImageNet (EfficientNet-Lite0) (seed 0) 0.960" in sentence and "chosen by the mean validation" in sentence
