"""Shortcut check: does a chest model answer the question, or tell the hospitals apart?

``python -m core.checks.shortcut --data ../shared/data --out weights/shortcut.json --update-cards``

The paediatric models (pneumonia, pneumonia-type) are run on the adult test images of the COVID-19
set, and the adult COVID-19 model on the paediatric test images of chest_xray. A model that learnt
the disease should call most *normal* images of the other source normal; one that learnt the source
will not. It also measures how well the pretrained backbone's pretext head tells the two sources
apart: the app uses that to warn when an image looks like the source a model never saw.
Only held-out test images are read.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.data.chest import Sample, covid_split, list_pneumonia_types
from core.io.loading import LoadedImage, load_image
from core.models.cards import WEIGHTS_DIR
from core.models.scan_model import ScanModel
from core.tasks.registry import TASKS

ADULT_GROUPS = ("ADULT_NORMAL", "ADULT_COVID")
#: Whose images each chest task was trained on (from the table of tasks).
SOURCE_OF_MODEL = {name: entry.population for name, entry in TASKS.items() if entry.population}


def adult_probability(backbone: ScanModel, image: LoadedImage | np.ndarray, frame: int = 0) -> float:
    """P(the image comes from the adult COVID-19 set) from the backbone's five-group pretext head."""
    probabilities = backbone.probabilities(backbone.prepare(image, frame)[np.newaxis])[0]
    return float(sum(probabilities[backbone.classes.index(group)] for group in ADULT_GROUPS))


def _probabilities(model: ScanModel, samples: Sequence[Sample], batch_size: int = 64) -> np.ndarray:
    out = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start : start + batch_size]
        batch = np.stack([model.prepare(load_image(s.path.read_bytes(), s.path.name)) for s in chunk])
        out.append(model.probabilities(batch))
    return np.concatenate(out)


def _answers(model: ScanModel, samples: Sequence[Sample]) -> dict[str, Any]:
    labels = [model.classes[i] for i in model.decide(_probabilities(model, samples))]
    return {
        "n": len(samples),
        "answers": {c: labels.count(c) for c in model.classes},
        "share": {c: labels.count(c) / max(len(labels), 1) for c in model.classes},
    }


def run_check(data_root: Path, weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any]:
    root = Path(data_root)
    paediatric = list_pneumonia_types(root / "chest_xray" / "test")
    adult = covid_split(root / "covid_radiography")[1]
    groups = {
        "paediatric_normal": [s for s in paediatric if s.label == 0],
        "paediatric_pneumonia": [s for s in paediatric if s.label != 0],
        "adult_normal": [s for s in adult if s.label == 0],
        "adult_covid": [s for s in adult if s.label == 1],
    }
    result: dict[str, Any] = {"groups": {k: len(v) for k, v in groups.items()}, "models": {}}
    for name in ("pneumonia", "pneumonia-type", "covid"):
        if not (Path(weights_dir) / f"{name}.json").exists():
            continue
        model = ScanModel.load(name, weights_dir)
        other = ("adult_normal", "adult_covid") if SOURCE_OF_MODEL[name] == "paediatric" else (
            "paediatric_normal", "paediatric_pneumonia")  # fmt: skip
        result["models"][name] = {
            "trained_on": SOURCE_OF_MODEL[name],
            "on_other_source": {group: _answers(model, groups[group]) for group in other},
        }
    if (Path(weights_dir) / "chest-backbone.json").exists():
        backbone = ScanModel.load("chest-backbone", weights_dir)
        adult_index = [backbone.classes.index(g) for g in ADULT_GROUPS]
        scores = {g: _probabilities(backbone, groups[g])[:, adult_index].sum(axis=1) for g in groups}
        is_adult = np.concatenate([np.full(len(scores[g]), g.startswith("adult")) for g in groups])
        said_adult = np.concatenate([scores[g] >= 0.5 for g in groups])
        result["source_detector"] = {
            "model": "chest-backbone (pretext head: P(adult) = P(adult normal) + P(adult COVID))",
            "threshold": 0.5,
            "accuracy": float(np.mean(is_adult == said_adult)),
            "per_group_called_adult": {g: float(np.mean(scores[g] >= 0.5)) for g in groups},
        }
    return result


def summary_lines(result: dict[str, Any]) -> dict[str, str]:
    """One sentence per model, for its card and the app."""
    lines = {}
    for name, entry in result["models"].items():
        parts = []
        for group, answers in entry["on_other_source"].items():
            shares = ", ".join(f"{share:.0%} {label}" for label, share in answers["share"].items())
            parts.append(f"on {answers['n']} {group.replace('_', ' ')} test images: {shares}")
        lines[name] = f"Trained on {entry['trained_on']} images; " + "; ".join(parts) + "."
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.shortcut", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data", type=Path, required=True, help="folder holding chest_xray/ and covid_radiography/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--update-cards", action="store_true", help="write each model's finding into its card")
    args = parser.parse_args(argv)
    result = run_check(args.data, args.weights)
    result["command"] = f"python -m core.checks.shortcut --data {args.data} --out {args.out}"
    result["date"] = dt.date.today().isoformat()
    lines = summary_lines(result)
    result["summary"] = lines
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, line in lines.items():
        print(f"{name}: {line}")
    if "source_detector" in result:
        print(f"source detector accuracy: {result['source_detector']['accuracy']:.3f}")
    if args.update_cards:
        for name, line in lines.items():
            model = ScanModel.load(name, args.weights, verify=False)
            model.card.findings["shortcut"] = {
                "summary": line,
                "details": result["models"][name],
                "command": result["command"],
            }
            model.card.save()
        if "source_detector" in result:
            backbone = ScanModel.load("chest-backbone", args.weights, verify=False)
            backbone.card.findings["source_detector"] = {**result["source_detector"], "command": result["command"]}
            backbone.card.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
