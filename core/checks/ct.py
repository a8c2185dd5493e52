"""Checks of the CT segmenters on labelled slices: infection Dice (`evaluate_ct`), and the lung outline against
the radiologists' infection masks with the infected-share error (`evaluate_lungs`), with a gallery."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.checks.metrics import bootstrap_intervals, dice, iou
from core.data.ct import CtSlice, read_binary, read_grey
from core.models.scan_model import ScanModel
from core.tasks.ct import computed_lungs
from core.transforms.lungs import count_lungs, infected_share


def evaluate_ct(model: ScanModel, slices: Sequence[CtSlice], progress: bool = True) -> dict[str, Any]:
    """Per-slice Dice, IoU, pixel sensitivity and specificity at the slices' own size, averaged."""
    from tqdm import tqdm

    threshold = model.card.mask_threshold or 0.5
    rows, started = [], time.perf_counter()
    for item in tqdm(slices, disable=not progress, desc="slices", unit="slice"):
        pixels = read_grey(item.image)
        predicted = model.segment(pixels) >= threshold
        truth = read_binary(item.mask)
        tp = int((predicted & truth).sum())
        tn = int((~predicted & ~truth).sum())
        rows.append(
            {
                "slice": item.image.stem,
                "infection_share_of_slice": round(float(truth.mean()), 4),
                "dice": dice(predicted, truth),
                "iou": iou(predicted, truth),
                "sensitivity": tp / int(truth.sum()) if truth.any() else float("nan"),  # undefined without infection
                "specificity": tn / max(int((~truth).sum()), 1),
            }
        )
    elapsed = time.perf_counter() - started
    return {
        "n": len(rows),
        "mask_threshold": threshold,
        **{f"{key}_mean": float(np.mean([r[key] for r in rows])) for key in ("dice", "iou")},
        "sensitivity": float(np.nanmean([r["sensitivity"] for r in rows])),
        "n_slices_with_infection": int(sum(not np.isnan(r["sensitivity"]) for r in rows)),
        "specificity": float(np.mean([r["specificity"] for r in rows])),
        "dice_median": float(np.median([r["dice"] for r in rows])),
        "dice_spread": _spread([r["dice"] for r in rows]),
        **_dice_intervals([r["dice"] for r in rows]),
        "latency_ms_per_slice": 1000 * elapsed / max(len(rows), 1),
        "per_slice": [{key: r[key] for key in ("slice", "infection_share_of_slice", "dice")} for r in rows],
    }


def _dice_intervals(dices: list[float]) -> dict[str, Any]:
    """95% percentile-bootstrap intervals of the mean and median slice Dice (slices resampled, model fixed)."""
    if len(dices) < 2:
        return {}
    figures = lambda _, d: {"dice_mean": float(np.mean(d)), "dice_median": float(np.median(d))}  # noqa: E731
    return {
        "ci95": bootstrap_intervals(np.zeros(len(dices)), np.asarray(dices), figures, ["dice_mean", "dice_median"]),
        "ci95_method": "percentile bootstrap over slices, 1,000 resamples (seed 0); model and threshold fixed",
    }


def _spread(values: list[float]) -> dict[str, float]:
    """Standard deviation, quartiles and extremes of per-slice figures."""
    if not values:
        return {}
    q25, q75 = np.percentile(values, [25, 75])
    return {"std": float(np.std(values)), "q25": float(q25), "q75": float(q75),
            "min": float(np.min(values)), "max": float(np.max(values))}  # fmt: skip


def evaluate_lungs(
    lung_model: ScanModel, infection_model: ScanModel, slices: Sequence, gallery: Path | None = None
) -> dict[str, Any]:
    """On labelled slices: the computed lungs (lung network + infection network, no radiologist input) against
    the radiologists' infection masks, the lung count and share, and the infected-share error."""
    rows, tiles = [], []
    for item in slices:
        grey = read_grey(item.image)
        infection = infection_model.segment(grey) >= (infection_model.card.mask_threshold or 0.5)
        lungs = computed_lungs(lung_model, grey, infection)
        truth = read_binary(item.mask)
        model_share, truth_share = infected_share(infection, lungs), infected_share(truth & lungs, lungs)
        rows.append({
            "slice": item.image.stem,
            "truth_pixels": int(truth.sum()),
            "truth_inside": int((truth & lungs).sum()),
            "lungs": count_lungs(lungs),
            "lung_share_of_slice": float(lungs.mean()),
            "share_model": model_share,
            "share_truth": truth_share,
            "share_error_pp": None if model_share is None else 100 * abs(model_share - truth_share),
        })  # fmt: skip
        if gallery is not None:
            tiles.append(_tile(grey, lungs, truth, item.image.stem))
    if gallery is not None and tiles:
        _save_gallery(tiles, gallery)
    truth_total = sum(r["truth_pixels"] for r in rows)
    per_slice = [r["truth_inside"] / r["truth_pixels"] for r in rows if r["truth_pixels"]]
    errors = [r["share_error_pp"] for r in rows if r["share_error_pp"] is not None]
    worst = sorted(rows, key=lambda r: r["truth_inside"] / max(r["truth_pixels"], 1))[:5]
    return {
        "n": len(rows),
        "infection_inside_lungs": sum(r["truth_inside"] for r in rows) / max(truth_total, 1),
        "infection_inside_lungs_per_slice_min": float(min(per_slice)) if per_slice else None,
        "infection_inside_lungs_per_slice_median": float(np.median(per_slice)) if per_slice else None,
        "slices_with_two_lungs": sum(r["lungs"] == 2 for r in rows),
        "slices_with_one_lung": sum(r["lungs"] == 1 for r in rows),
        "slices_with_more_than_two": sum(r["lungs"] > 2 for r in rows),
        "lung_share_of_slice_median": float(np.median([r["lung_share_of_slice"] for r in rows])),
        "lung_share_of_slice_range": [
            min(r["lung_share_of_slice"] for r in rows),
            max(r["lung_share_of_slice"] for r in rows),
        ],
        "share_error_pp_mean": float(np.mean(errors)) if errors else None,
        "share_error_pp_median": float(np.median(errors)) if errors else None,
        "share_error_pp_max": float(np.max(errors)) if errors else None,
        "share_max": float(max((r["share_model"] or 0) for r in rows)),
        "worst_containment": [
            {"slice": r["slice"], "inside": round(r["truth_inside"] / max(r["truth_pixels"], 1), 3)} for r in worst
        ],
        "per_slice": rows,
    }


def _tile(grey: np.ndarray, lungs: np.ndarray, truth: np.ndarray, label: str, side: int = 200) -> np.ndarray:
    rgb = np.repeat(np.clip(grey, 0, 1)[..., None], 3, axis=-1)
    rgb[truth] = rgb[truth] * 0.4 + np.array([1.0, 0.25, 0.2]) * 0.6
    edge = cv2.morphologyEx(lungs.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    rgb[edge] = (0.1, 1.0, 0.3)
    tile = cv2.resize((rgb * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_AREA)
    cv2.putText(tile, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
    return tile


def _save_gallery(tiles: list[np.ndarray], path: Path, columns: int = 8) -> None:
    from PIL import Image

    rows = [tiles[i : i + columns] for i in range(0, len(tiles), columns)]
    blank = np.zeros_like(tiles[0])
    grid = np.concatenate([np.concatenate(row + [blank] * (columns - len(row)), axis=1) for row in rows], axis=0)
    Image.fromarray(grid).save(path, quality=82)
