"""Evaluation CLI: ``python -m core.evaluate pneumonia --data DIR --out FILE.json [--update-card]``.

DIR holds ``NORMAL/`` and ``PNEUMONIA/`` (any size, PNG/JPEG/DICOM). The committed weights and the
threshold in their card are used as they are; nothing is tuned here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.metrics import binary_metrics, bootstrap_intervals, multiclass_metrics
from core.data.chest import Sample, covid_holdout, list_covid, list_labelled, list_pneumonia_types
from core.io.loading import load_image
from core.models.cards import WEIGHTS_DIR
from core.models.scan_model import ScanModel, softmax

MRI_TASKS = ("mri-segmentation", "mri-tumour")
LISTERS = {
    "pneumonia": lambda root: list_labelled(root, ["NORMAL", "PNEUMONIA"]),
    "pneumonia-type": list_pneumonia_types,
    "covid": list_covid,
}


def evaluate_classifier(
    model: ScanModel, samples: Sequence[Sample], batch_size: int = 32, progress: bool = True
) -> dict[str, Any]:
    """Metrics of `model` on labelled samples, plus decode-to-answer latency per image."""
    from tqdm import tqdm

    started = time.perf_counter()
    logits = []
    for start in tqdm(range(0, len(samples), batch_size), disable=not progress, desc="evaluating", unit="batch"):
        chunk = samples[start : start + batch_size]
        batch = np.stack([model.prepare(load_image(s.path.read_bytes(), s.path.name)) for s in chunk])
        logits.append(model.logits(batch))
    elapsed = time.perf_counter() - started
    probabilities = softmax(np.concatenate(logits), model.card.temperature)
    labels = np.array([s.label for s in samples])
    if len(model.classes) == 2 and model.card.positive_index is not None:
        threshold = model.card.threshold or 0.5
        positive = probabilities[:, model.card.positive_index]
        metrics = binary_metrics(labels, positive, threshold)
        metrics["ci95"] = bootstrap_intervals(
            labels,
            positive,
            lambda y, s: binary_metrics(y, s, threshold),
            ["accuracy", "sensitivity", "specificity", "auc"],
        )
    else:
        metrics = multiclass_metrics(labels, probabilities, model.classes)
        metrics["ci95"] = bootstrap_intervals(
            labels, probabilities, lambda y, p: multiclass_metrics(y, p, model.classes),
            ["accuracy", "macro_f1", "auc_bacterial_vs_viral"],
        )  # fmt: skip
    metrics["ci95_method"] = "percentile bootstrap over images, 1,000 resamples (seed 0); model and threshold fixed"

    single = []
    for sample in samples[: min(20, len(samples))]:
        data = sample.path.read_bytes()
        tick = time.perf_counter()
        model.predict(load_image(data, sample.path.name))
        single.append(time.perf_counter() - tick)
    metrics["latency_ms_per_image_batched"] = 1000 * elapsed / max(len(samples), 1)
    metrics["latency_ms_single_image_median"] = 1000 * float(np.median(single)) if single else None
    metrics["n_patients"] = len({s.patient for s in samples})
    return metrics


def _is_training_folder(model: ScanModel, folder: Path) -> bool:
    """Whether `folder` is the folder the model was trained from (its card's `train_dir`, relative to the repo)."""
    train_dir = model.card.data.get("train_dir")
    if not train_dir:
        return False
    repo = Path(__file__).resolve().parents[2]
    return (repo / train_dir).resolve() == Path(folder).resolve() or Path(train_dir).resolve() == Path(folder).resolve()


def _mri_patients(model: ScanModel, root: Path, split: str) -> list:
    """Patients under `root`; with split 'test' or 'validation', only those the card lists for it."""
    from core.data.mri import list_patients

    patients = list_patients(root)
    if split in ("test", "validation"):
        wanted = set(model.card.data.get(f"{split}_patients", []))
        patients = [p for p in patients if p.patient_id in wanted]
    return patients


def evaluate_segmentation(model: ScanModel, patients: Sequence, progress: bool = True) -> dict[str, Any]:
    """Per-patient Dice / IoU over whole volumes at the slices' own resolution, plus per-slice figures."""
    from tqdm import tqdm

    from core.checks.metrics import dice, iou
    from core.data.mri import read_mask, read_slice
    from core.tasks.mri_study import remove_small_components

    threshold = model.card.mask_threshold or 0.5
    per_patient, slice_dice, slice_iou = {}, [], []
    total_slices, started = 0, time.perf_counter()
    for patient in tqdm(patients, disable=not progress, desc="patients", unit="patient"):
        pixels = [read_slice(item.image) for item in patient.slices]
        truth = np.stack([read_mask(item.mask, p.shape[:2]) for item, p in zip(patient.slices, pixels, strict=True)])
        predicted = np.stack(model.segment_many(pixels)) >= threshold
        predicted = remove_small_components(predicted, model.card.min_component_voxels)
        per_patient[patient.patient_id] = {
            "dice": dice(predicted, truth),
            "iou": iou(predicted, truth),
            "volume_voxels_predicted": int(predicted.sum()),
            "volume_voxels_true": int(truth.sum()),
            "overlap_voxels": int((predicted & truth).sum()),
            "false_positive_slices": int((predicted.any(axis=(1, 2)) & ~truth.any(axis=(1, 2))).sum()),
            "slices": len(pixels),
            "tumour_slices": int(truth.reshape(len(truth), -1).any(axis=1).sum()),
        }
        for one_predicted, one_truth in zip(predicted, truth, strict=True):
            if one_truth.any():
                slice_dice.append(dice(one_predicted, one_truth))
                slice_iou.append(iou(one_predicted, one_truth))
        total_slices += len(pixels)
    elapsed = time.perf_counter() - started
    dices = [value["dice"] for value in per_patient.values()]
    volume_errors = [
        abs(v["volume_voxels_predicted"] - v["volume_voxels_true"]) / v["volume_voxels_true"]
        for v in per_patient.values()
        if v["volume_voxels_true"] > 0
    ]
    worst = sorted(per_patient, key=lambda name: per_patient[name]["dice"])[:5]
    return {
        "n_patients": len(per_patient),
        "n_slices": total_slices,
        "mask_threshold": threshold,
        "dice_mean": float(np.mean(dices)),
        "dice_median": float(np.median(dices)),
        "dice_std": float(np.std(dices)),
        "iou": float(np.mean([value["iou"] for value in per_patient.values()])),
        "dice_slices_with_tumour": float(np.mean(slice_dice)) if slice_dice else None,
        "iou_slices_with_tumour": float(np.mean(slice_iou)) if slice_iou else None,
        "n_slices_with_tumour": len(slice_dice),
        "latency_ms_per_slice_batched": 1000 * elapsed / max(total_slices, 1),
        "test_time_flip": model.card.test_time_flip,
        "min_component_voxels": model.card.min_component_voxels,
        "volume_mape": float(np.mean(volume_errors)) if volume_errors else None,
        "volume_mape_note": "mean absolute percentage error of the tumour volume per patient (predicted vs "
        "radiologist mask voxels; any voxel size cancels out)",
        "worst_patients": [
            {"patient": name, "dice": per_patient[name]["dice"], "why": failure_reason(per_patient[name])}
            for name in worst
        ],
        "per_patient": per_patient,
    }


def failure_reason(row: dict[str, Any]) -> str:
    """What went wrong for one patient, from its volumes: missed, under- or over-segmented, false alarms."""
    true, predicted, overlap = row["volume_voxels_true"], row["volume_voxels_predicted"], row["overlap_voxels"]
    alarms = (
        f"; false alarms on {row['false_positive_slices']} slice(s) without tumour"
        if row["false_positive_slices"]
        else ""
    )
    if true == 0:
        return f"no tumour marked; {predicted} voxels predicted" + alarms
    if overlap == 0:
        return f"tumour missed entirely ({true} voxels on {row['tumour_slices']} slices, none found)" + alarms
    found, precise = overlap / true, overlap / max(predicted, 1)
    if found < 0.6:
        return (
            f"under-segmented: {found:.0%} of the tumour found (predicted {predicted / true:.0%} of its volume)"
            + alarms
        )
    if precise < 0.7:
        return f"over-segmented: {1 - precise:.0%} of the predicted mask lies outside the tumour" + alarms
    return f"partly right: {found:.0%} of the tumour found, {precise:.0%} of the mask on it" + alarms


def evaluate_mri_tumour(model: ScanModel, patients: Sequence, progress: bool = True) -> dict[str, Any]:
    """Slice-level tumour yes/no (a slice is positive when its mask is not empty): the classifier alone, and
    the card's decision rule (classifier and / or mask area) when it has one; plus per-patient figures."""
    from core.tasks.segmentation import tumour_decision
    from core.training.mri import slice_scores

    started = time.perf_counter()
    rule = model.card.decision_rule
    segmenter = ScanModel.load(rule.get("mask_model", "mri-segmentation"), model.card.path.parent)
    probabilities, areas, truth, owners = slice_scores(model, segmenter, list(patients))
    elapsed = time.perf_counter() - started
    labels = truth.astype(int)
    metrics = binary_metrics(labels, probabilities, model.card.threshold or 0.5)
    metrics["n_patients"] = len(patients)
    metrics["latency_ms_per_slice_batched"] = 1000 * elapsed / max(len(labels), 1)
    if rule:
        decided = np.array([tumour_decision(p, a, rule) for p, a in zip(probabilities, areas, strict=True)])
        combined = binary_metrics(labels, decided.astype(float), 0.5)
        combined.pop("roc", None)
        combined["auc"] = None  # a yes/no rule has no score to rank by
        combined["ci95"] = bootstrap_intervals(
            labels,
            decided.astype(float),
            lambda y, s: binary_metrics(y, s, 0.5),
            ["accuracy", "sensitivity", "specificity"],
        )
        with_tumour = [p for p in np.unique(owners) if truth[owners == p].any()]
        combined["patients_found"] = f"{sum(decided[owners == p].any() for p in with_tumour)} of {len(with_tumour)}"
        combined["patients_with_a_false_alarm"] = int(
            sum((decided & ~truth)[owners == p].any() for p in np.unique(owners))
        )
        metrics["decision_rule"] = {**rule, **combined}
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__)
    parser.add_argument("task", choices=[*sorted(LISTERS), *MRI_TASKS, "ct-infection", "ct-lungs", "gate"])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the metrics JSON")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--model", default=None, help="a model name other than the task's (e.g. covid-scratch)")
    parser.add_argument("--split-name", default="test", help="name of this data in the card's metrics")
    parser.add_argument(
        "--split",
        choices=["all", "test", "validation"],
        default=None,
        help="MRI: all patients under --data (default), or only the card's held-out test / validation patients; "
        "covid: the seeded held-out test part (the default only when --data is the model's training folder) "
        "or all images (the default for any other folder)",
    )
    parser.add_argument("--update-card", action="store_true", help="also write the metrics into the model card")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")

    model = ScanModel.load(args.model or args.task, args.weights)
    if args.split is None:
        args.split = "test" if args.task == "covid" and _is_training_folder(model, args.data) else "all"
        what = "the held-out part of the training folder" if args.split == "test" else "every image in the folder"
        print(f"split: {args.split} ({what})")
    if args.task == "gate":
        from core.checks.gate import evaluate_gate

        metrics = evaluate_gate(model, args.data)
    elif args.task == "ct-infection":
        from core.checks.ct import evaluate_ct
        from core.data.ct import list_ct

        metrics = evaluate_ct(model, list_ct(args.data))
    elif args.task == "ct-lungs":
        from core.checks.ct import evaluate_lungs
        from core.data.ct import list_ct

        gallery = args.out.with_name(args.out.name.split(".")[0] + ".gallery.jpg")
        metrics = evaluate_lungs(model, ScanModel.load("ct-infection", args.weights), list_ct(args.data), gallery)
        metrics["gallery"] = gallery.name
        print(f"gallery of every outline: {gallery}")
    elif args.task in MRI_TASKS:
        patients = _mri_patients(model, args.data, args.split)
        if not patients:
            parser.error(f"no patient folders found under {args.data}")
        evaluator = evaluate_segmentation if args.task == "mri-segmentation" else evaluate_mri_tumour
        metrics = evaluator(model, patients)
        if args.split != "all":
            args.split_name = args.split
    else:
        samples = LISTERS[args.task](args.data)
        if args.task == "covid" and args.split == "test":
            samples = covid_holdout(samples, 0.2, 0)[1]
            args.split_name = "test"
        if not samples:
            parser.error(f"no images found under {args.data}")
        metrics = evaluate_classifier(model, samples)
    result = {
        "model": model.name,
        "weights_sha256": model.card.sha256,
        "data": str(args.data),
        "split": args.split_name,
        "command": f"python -m core.evaluate {args.task} --data {args.data} --out {args.out}"
        + (f" --model {args.model}" if args.model else "")
        + (f" --split {args.split}" if args.split != "all" else ""),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        **metrics,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    print(json.dumps(summary, indent=2))
    if args.update_card:
        model.card.metrics[args.split_name] = result
        model.card.save()
        print(f"updated {model.card.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
