"""The preprocessing x model study under patient-grouped K-fold cross-validation.

``python -m core.checks.study --data ../shared/data/chest_xray/train --folds 5 --out weights/study.json``

Task: normal vs pneumonia on the training folder only (the official test set is never read). Folds
are stratified and grouped by patient (scikit-learn `StratifiedGroupKFold`, seed 0). Every
(preprocessing, model family, fold) run is written to the output file as soon as it ends, so an
interrupted study resumes where it stopped; the summary (mean and standard deviation of AUC and
accuracy per pair, and the winner by mean AUC) is rewritten after every run.

Model families, all small enough for 2 CPU cores at 48x48:
- ``cnn``: a plain CNN;
- ``cnn_gru``: a CNN whose feature-map rows are read, top to bottom, by a GRU;
- ``stack3d``: 3D convolutions over a volume of three versions of the preprocessed image
  (as is, Gaussian-smoothed sigma 1, sigma 2: a scale stack), which fold the depth away, then 2D stages;
- ``finetuned``: the plain CNN started from a backbone pretrained on the COVID-19 Radiography images
  (the other data set, so no study image is ever seen in pretraining), then fine-tuned.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.data.chest import Sample, covid_split, list_labelled
from core.io.loading import load_image
from core.models.study_networks import FAMILIES, FAMILY_LABELS, build_family, scale_stack
from core.transforms.preprocessing import build_pipeline

PREPROCESSINGS: dict[str, list[dict[str, Any]]] = {
    "none": [],
    "clahe": [{"name": "clahe"}],
    "histeq": [{"name": "histeq"}],
    "denoise": [{"name": "median"}],
    "lung_crop": [{"name": "lung_crop"}],
    "edges": [{"name": "edges"}],
}


@dataclass
class StudyConfig:
    """What a study run was asked to do (stored in the output, checked when resuming)."""

    data: str
    folds: int = 5
    size: int = 48
    epochs: int = 4
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 0
    limit: int | None = None
    preprocessings: tuple[str, ...] = tuple(PREPROCESSINGS)
    families: tuple[str, ...] = FAMILIES
    backbone_data: str | None = None


def patient_folds(samples: Sequence[Sample], folds: int, seed: int = 0) -> list[np.ndarray]:
    """Fold index per sample, stratified by label and grouped by patient."""
    from sklearn.model_selection import StratifiedGroupKFold

    labels = np.array([s.label for s in samples])
    groups = np.array([s.patient for s in samples])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.zeros(len(samples), dtype=int)
    for fold, (_, test_index) in enumerate(splitter.split(np.zeros(len(samples)), labels, groups)):
        assignment[test_index] = fold
    return assignment


def decode_grey(paths: Sequence[Path], progress: bool = True) -> list[np.ndarray]:
    """Decode files once into grey float32 images in [0, 1]."""
    from tqdm import tqdm

    images = []
    for path in tqdm(paths, desc="decoding", unit="img", disable=not progress):
        frame = load_image(Path(path).read_bytes(), Path(path).name).frame(0)
        images.append(frame[..., :3].mean(axis=-1) if frame.ndim == 3 else frame)
    return images


def preprocess_all(images: Sequence[np.ndarray], name: str, size: int) -> np.ndarray:
    """(N, size, size) float32: the named preprocessing at full resolution, then resize and normalise."""
    pipeline = build_pipeline([*PREPROCESSINGS[name], {"name": "resize", "size": [size, size]}, {"name": "normalise"}])
    return np.stack([pipeline(image) for image in images]).astype(np.float32)


def fit_and_score(
    model,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
) -> dict[str, float]:
    """Train with balanced class weights and a cosine schedule; AUC and accuracy (argmax) on the held-out fold."""
    import keras
    from sklearn.metrics import roc_auc_score

    from core.models.scan_model import softmax
    from core.training.loops import FitSettings, balanced_class_weights, fit_classifier, shuffled_batches

    keras.utils.set_random_seed(seed)
    settings = FitSettings(epochs, batch_size, learning_rate, None, seed)
    steps = int(np.ceil(len(x_train) / batch_size))
    fit = fit_classifier(model, shuffled_batches(x_train, y_train, batch_size, seed), steps, x_test, y_test, 2,
                         settings, monitor=False, class_weight=balanced_class_weights(y_train, 2))  # fmt: skip
    logits = fit.logits
    probability = softmax(logits)[:, 1]
    return {
        "auc": float(roc_auc_score(y_test, probability)),
        "accuracy": float(np.mean((probability >= 0.5) == y_test)),
    }


def pretrain_study_backbone(covid_root: Path, size: int, epochs: int, seed: int, log: Callable[[str], None]) -> Path:
    """Pretrain the plain study CNN on COVID-19 vs normal (development part of the COVID set only)."""
    import tempfile

    development, _ = covid_split(covid_root)
    images = decode_grey([s.path for s in development], progress=False)
    x = preprocess_all(images, "none", size)[..., np.newaxis]
    y = np.array([s.label for s in development])
    model = build_family("cnn", size, name="backbone")
    started = time.time()
    fit_and_score(model, x, y, x[:64], y[:64], epochs, 64, 2e-3, seed)
    path = Path(tempfile.mkdtemp(prefix="scansight-study-")) / "backbone.keras"
    model.save(path)
    log(f"backbone pretrained on {len(development)} COVID-19 Radiography images in {time.time() - started:.0f}s")
    return path


def summarise(runs: Sequence[dict[str, Any]], folds: int) -> dict[str, Any]:
    """Mean and standard deviation per (preprocessing, family); the winner by mean AUC over complete pairs."""
    pairs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        pairs.setdefault((run["preprocessing"], run["family"]), []).append(run)
    table = []
    for (preprocessing, family), entries in sorted(pairs.items()):
        auc = np.array([e["auc"] for e in entries])
        accuracy = np.array([e["accuracy"] for e in entries])
        table.append(
            {
                "preprocessing": preprocessing,
                "family": family,
                "folds_done": len(entries),
                "auc_mean": float(auc.mean()),
                "auc_std": float(auc.std(ddof=1)) if len(auc) > 1 else 0.0,
                "accuracy_mean": float(accuracy.mean()),
                "accuracy_std": float(accuracy.std(ddof=1)) if len(accuracy) > 1 else 0.0,
                "seconds_mean": float(np.mean([e["seconds"] for e in entries])),
            }
        )
    complete = [row for row in table if row["folds_done"] == folds]
    winner = max(complete, key=lambda row: row["auc_mean"]) if complete else None
    return {"table": table, "winner": winner, "complete_pairs": len(complete)}


def _write(path: Path, payload: dict[str, Any]) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(temporary, path)


def run_study(config: StudyConfig, out: Path, log: Callable[[str], None] = print, progress: bool = True) -> dict:
    """Run (or resume) the study; returns the output payload (also written to `out`)."""
    from tqdm import tqdm

    out = Path(out)
    runs: list[dict[str, Any]] = []
    if out.exists():
        previous = json.loads(out.read_text())
        kept = {k: v for k, v in previous.get("config", {}).items() if k not in ("preprocessings", "families")}
        wanted = {k: v for k, v in asdict(config).items() if k not in ("preprocessings", "families")}
        if kept != wanted:
            raise SystemExit(f"{out} holds a study with other settings; use another --out or delete it.")
        runs = previous.get("runs", [])
        log(f"resuming: {len(runs)} runs already in {out}")
    done = {(r["preprocessing"], r["family"], r["fold"]) for r in runs}

    samples = list_labelled(Path(config.data), ["NORMAL", "PNEUMONIA"])
    if config.limit:
        rng = np.random.default_rng(config.seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), min(config.limit, len(samples)), replace=False))]
    fold_of = patient_folds(samples, config.folds, config.seed)
    labels = np.array([s.label for s in samples])
    todo = [
        (p, f, k)
        for p in config.preprocessings
        for f in config.families
        for k in range(config.folds)
        if (p, f, k) not in done
    ]
    payload: dict[str, Any] = {
        "config": asdict(config),
        "task": "normal vs pneumonia, chest_xray/train only; folds stratified and grouped by patient",
        "n_images": len(samples),
        "n_patients": len({s.patient for s in samples}),
        "preprocessing_steps": {name: PREPROCESSINGS[name] for name in config.preprocessings},
        "families": {name: FAMILY_LABELS[name] for name in config.families},
        "runs": runs,
        "summary": summarise(runs, config.folds),
    }
    if not todo:
        _write(out, payload)
        return payload

    images = decode_grey([s.path for s in samples], progress=progress)
    backbone: Path | None = None
    bar = tqdm(total=len(todo), desc="study", unit="run", disable=not progress)
    for preprocessing in config.preprocessings:
        jobs = [job for job in todo if job[0] == preprocessing]
        if not jobs:
            continue
        x = preprocess_all(images, preprocessing, config.size)
        for _, family, fold in jobs:
            if family == "finetuned" and backbone is None:
                if not config.backbone_data:
                    raise SystemExit("the finetuned family needs --backbone-data (the COVID-19 Radiography folder)")
                backbone = pretrain_study_backbone(Path(config.backbone_data), config.size, config.epochs,
                                                   config.seed, log)  # fmt: skip
            train, test = fold_of != fold, fold_of == fold
            inputs = scale_stack(x) if family == "stack3d" else x[..., np.newaxis]
            model = build_family(family, config.size)
            if family == "finetuned":
                from core.training.classifier import copy_backbone

                copy_backbone(backbone, model)
            started = time.time()
            scores = fit_and_score(
                model, inputs[train], labels[train], inputs[test], labels[test],
                config.epochs, config.batch_size, config.learning_rate, config.seed + fold,
            )  # fmt: skip
            runs.append(
                {
                    "preprocessing": preprocessing,
                    "family": family,
                    "fold": fold,
                    **scores,
                    "n_train": int(train.sum()),
                    "n_test": int(test.sum()),
                    "seconds": round(time.time() - started, 1),
                }
            )
            payload["summary"] = summarise(runs, config.folds)
            _write(out, payload)
            bar.set_postfix_str(f"{preprocessing}/{family} fold {fold}: AUC {scores['auc']:.3f}")
            bar.update()
    bar.close()
    return payload


STUDY_FILE = Path(__file__).resolve().parents[2] / "weights" / "study.json"


def load_results(path: Path = STUDY_FILE) -> dict[str, Any] | None:
    """The committed study results, or None when the study has not been run."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def format_table(summary: dict[str, Any]) -> str:
    lines = ["preprocessing  family      folds  AUC mean+-std     accuracy mean+-std"]
    for row in sorted(summary["table"], key=lambda r: -r["auc_mean"]):
        lines.append(
            f"{row['preprocessing']:<14} {row['family']:<11} {row['folds_done']:>5}  "
            f"{row['auc_mean']:.3f} +- {row['auc_std']:.3f}   {row['accuracy_mean']:.3f} +- {row['accuracy_std']:.3f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.study", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data", type=Path, required=True, help="chest_xray/train (NORMAL/ and PNEUMONIA/)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True, help="results JSON (resumed if it exists)")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--limit", type=int, default=None, help="use a subset of images (smoke runs)")
    parser.add_argument("--preprocessings", type=str, default=",".join(PREPROCESSINGS))
    parser.add_argument("--families", type=str, default=",".join(FAMILIES))
    parser.add_argument(
        "--backbone-data", type=Path, default=None,
        help="COVID-19 Radiography folder, to pretrain the 'finetuned' family (default: beside --data)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")
    preprocessings = tuple(p for p in args.preprocessings.split(",") if p)
    families = tuple(f for f in args.families.split(",") if f)
    unknown = [p for p in preprocessings if p not in PREPROCESSINGS] + [f for f in families if f not in FAMILIES]
    if unknown:
        parser.error(f"unknown preprocessing or family: {unknown}")
    backbone_data = args.backbone_data
    if backbone_data is None and "finetuned" in families:
        guess = args.data.resolve().parent.parent / "covid_radiography"
        backbone_data = guess if guess.is_dir() else None
    config = StudyConfig(
        data=str(args.data), folds=args.folds, size=args.size, epochs=args.epochs, limit=args.limit,
        preprocessings=preprocessings, families=families,
        backbone_data=str(backbone_data) if backbone_data else None,
    )  # fmt: skip
    payload = run_study(config, args.out, log=lambda m: print(m, flush=True), progress=not args.quiet)
    print(format_table(payload["summary"]))
    if payload["summary"]["winner"]:
        winner = payload["summary"]["winner"]
        print(f"winner by mean AUC: {winner['preprocessing']} + {winner['family']} ({winner['auc_mean']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
