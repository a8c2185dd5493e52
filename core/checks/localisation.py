"""How far can a heatmap be trusted? Grad-CAM against radiologists' boxes (RSNA sample).

``python -m core.checks.localisation --data ../shared/data/rsna_sample --out FILE.json [--update-card]``

For each positive image: the pointing game (does the map's maximum fall inside a box?) and the IoU of
the map thresholded at half its maximum with the union of the boxes; for every image, what the model
says. The weight-randomisation sanity check (Adebayo et al. 2018) compares each map with the map of
the same network whose weights were shuffled: a trustworthy map must change (low rank correlation).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.checks.metrics import iou
from core.explain.gradcam import CAM_METHODS, heatmap
from core.io.loading import load_image
from core.models.scan_model import ScanModel


@dataclass(frozen=True)
class Box:
    """A radiologist's box in pixel coordinates of the original image."""

    x: float
    y: float
    width: float
    height: float


def load_boxes(csv_path: Path) -> dict[str, list[Box]]:
    """patientId -> boxes (an empty list for images without pneumonia)."""
    boxes: dict[str, list[Box]] = defaultdict(list)
    with open(csv_path, newline="") as handle:
        for row in csv.DictReader(handle):
            boxes.setdefault(row["patientId"], [])
            if row.get("Target") == "1" and row.get("x"):
                boxes[row["patientId"]].append(
                    Box(float(row["x"]), float(row["y"]), float(row["width"]), float(row["height"]))
                )
    return dict(boxes)


def box_mask(shape: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    for box in boxes:
        top, left = max(0, int(box.y)), max(0, int(box.x))
        mask[top : int(box.y + box.height), left : int(box.x + box.width)] = True
    return mask


def pointing_game(cam: np.ndarray, boxes: Sequence[Box]) -> bool:
    """True when the map's maximum lies inside a box."""
    row, column = np.unravel_index(int(np.argmax(cam)), cam.shape)
    return bool(box_mask(cam.shape, boxes)[row, column])


def cam_box_iou(cam: np.ndarray, boxes: Sequence[Box], level: float = 0.5) -> float:
    """IoU of the map thresholded at `level` x its maximum with the union of the boxes."""
    return iou(cam >= level * float(cam.max()), box_mask(cam.shape, boxes), empty_value=0.0)


def rank_correlation(a: np.ndarray, b: np.ndarray, side: int = 64) -> float:
    """Spearman correlation of two maps (compared at side x side)."""
    from scipy.stats import spearmanr

    small_a = cv2.resize(a.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel()
    small_b = cv2.resize(b.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel()
    if small_a.std() == 0 or small_b.std() == 0:
        return 0.0
    return float(spearmanr(small_a, small_b).statistic)


def randomised(model: ScanModel, seed: int = 0) -> ScanModel:
    """A copy of the model whose every weight tensor is shuffled (same architecture, no learning left)."""
    import keras

    rng = np.random.default_rng(seed)
    clone = keras.models.clone_model(model.keras_model)
    clone.set_weights([rng.permutation(w.ravel()).reshape(w.shape) for w in model.keras_model.get_weights()])
    return ScanModel(model.card, clone)


def localisation_check(model: ScanModel, data_dir: Path, seed: int = 0) -> dict[str, Any]:
    boxes = load_boxes(Path(data_dir) / "labels.csv")
    shuffled = randomised(model, seed)
    cases, summary = [], {}
    for patient, patient_boxes in sorted(boxes.items()):
        path = Path(data_dir) / f"{patient}.dcm"
        if not path.exists():
            continue
        image = load_image(path.read_bytes(), path.name)
        prediction = model.predict(image)
        case: dict[str, Any] = {
            "patient": patient,
            "boxes": len(patient_boxes),
            "p_pneumonia": round(float(prediction.positive_probability), 4),
            "label": prediction.label,
        }
        if patient_boxes:
            for method in CAM_METHODS:
                cam = heatmap(model, image, method=method, target_class=model.card.positive_class)
                cam_random = heatmap(shuffled, image, method=method, target_class=model.card.positive_class)
                case[method] = {
                    "pointing_hit": pointing_game(cam, patient_boxes),
                    "iou": round(cam_box_iou(cam, patient_boxes), 4),
                    "randomised_rank_correlation": round(rank_correlation(cam, cam_random), 4),
                    "randomised_pointing_hit": pointing_game(cam_random, patient_boxes),
                }
        cases.append(case)
    positives = [c for c in cases if c["boxes"]]
    for method in CAM_METHODS:
        summary[method] = {
            "pointing_game": float(np.mean([c[method]["pointing_hit"] for c in positives])) if positives else None,
            "iou_mean": float(np.mean([c[method]["iou"] for c in positives])) if positives else None,
            "randomised_rank_correlation_mean": float(
                np.mean([c[method]["randomised_rank_correlation"] for c in positives])
            )
            if positives
            else None,
            "randomised_pointing_game": float(np.mean([c[method]["randomised_pointing_hit"] for c in positives]))
            if positives
            else None,
        }
    negatives = [c for c in cases if not c["boxes"]]
    return {
        "data": str(data_dir),
        "n_images": len(cases),
        "n_positive": len(positives),
        "n_boxes": sum(c["boxes"] for c in positives),
        "map_threshold_for_iou": "0.5 x map maximum",
        "methods": summary,
        "sensitivity_on_rsna_positives": float(np.mean([c["label"] == "PNEUMONIA" for c in positives]))
        if positives
        else None,
        "specificity_on_rsna_negatives": float(np.mean([c["label"] == "NORMAL" for c in negatives]))
        if negatives
        else None,
        "cases": cases,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.localisation", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="rsna_sample folder (DICOMs + labels.csv)")
    parser.add_argument("--model", default="pneumonia")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--update-card", action="store_true")
    args = parser.parse_args(argv)
    model = ScanModel.load(args.model)
    result = localisation_check(model, args.data)
    result["command"] = f"python -m core.checks.localisation --data {args.data} --out {args.out}"
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "cases"}, indent=2))
    if args.update_card:
        model.card.metrics["localisation"] = {k: v for k, v in result.items() if k != "cases"}
        model.card.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
