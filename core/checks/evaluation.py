"""Evaluation of the classifiers and the MRI models on labelled data, with the committed weights and the threshold
in their card as they are (nothing is tuned here): metrics, bootstrap intervals, latency, per-patient figures."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.metrics import binary_metrics, bootstrap_intervals, multiclass_metrics
from core.data.chest import Sample, list_covid, list_labelled, list_pneumonia_types
from core.io.loading import load_image
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


def is_training_folder(model: ScanModel, folder: Path) -> bool:
    """Whether `folder` is the folder the model was trained from (its card's `train_dir`, relative to the repo)."""
    train_dir = model.card.data.get("train_dir")
    if not train_dir:
        return False
    repo = Path(__file__).resolve().parents[2]
    return (repo / train_dir).resolve() == Path(folder).resolve() or Path(train_dir).resolve() == Path(folder).resolve()


def mri_patients(model: ScanModel, root: Path, split: str) -> list:
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
        combined.pop("threshold", None)  # 0.5 cuts the yes/no decisions: it must not replace the rule's own threshold
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
