"""The lungs on an axial CT slice, for the infected share: a ResUNet (`ct-lungs`) trained on pseudo-labels.

The data hold no lung masks. Infection lies in the lung by definition, and healthy lung is the dark tissue
inside the chest, so a training slice's lungs are taken as its dark lung regions joined with the radiologists'
infection mask, closed and filled (`pseudo_lungs`). A network trained on those learns to include consolidated
lung, which is as bright as soft tissue and which a threshold alone misses. At inference the lungs are the
network's mask joined with the infection model's mask (`lung_outline`), so the infected share never exceeds 100%.

Validation on the 48 test slices (no lung masks there either, so what exists is used): the share of the
radiologist-marked infection pixels that fall inside the computed lungs, whether two lungs are found, the
lungs' share of the slice, a gallery of every outline for a reader to judge, and the share error: the infection
model's share against the radiologists' share within the same lungs (`evaluate_lungs`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.cards import ModelCard
from core.models import ScanModel

MIN_LUNG_SHARE = 0.01  # a lung component smaller than 1% of the slice is noise


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_fill_holes(mask)


def _large_components(mask: np.ndarray, min_share: float = MIN_LUNG_SHARE) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_share * mask.size
    return keep[labels]


def dark_lungs(grey: np.ndarray) -> np.ndarray:
    """Healthy lung as a threshold sees it: dark regions (Otsu) of at least 1% of the slice, without the uniform
    black air outside the body, holes filled."""
    grey8 = np.clip(np.asarray(grey, np.float32) * 255, 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(grey8, (5, 5), 0)
    _, dark = cv2.threshold(blurred, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
    height, width = dark.shape
    out = np.zeros(dark.shape, bool)
    for index in range(1, count):
        if stats[index, cv2.CC_STAT_AREA] < MIN_LUNG_SHARE * height * width:
            continue
        component = labels == index
        border = int(component[0].sum() + component[-1].sum() + component[:, 0].sum() + component[:, -1].sum())
        if border > 0.25 * 2 * (height + width) or (border and blurred[component].mean() < 8):
            continue  # air outside the body: long along the edge, or uniformly black
        out |= component
    return _fill_holes(out)


def pseudo_lungs(grey: np.ndarray, infection: np.ndarray) -> np.ndarray:
    """A training slice's lungs: its dark lung joined with the radiologists' infection, closed and filled."""
    lungs = dark_lungs(grey) | np.asarray(infection, bool)
    side = max(3, int(0.03 * min(lungs.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
    lungs = cv2.morphologyEx(lungs.astype(np.uint8), cv2.MORPH_CLOSE, kernel) > 0
    return _large_components(_fill_holes(lungs))


def lung_outline(lung_probability: np.ndarray, infection: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """The lungs used for the share: the lung network's mask joined with the infection mask, filled, without
    specks (infection is lung by definition, so the share is at most 100%)."""
    lungs = (np.asarray(lung_probability) >= threshold) | np.asarray(infection, bool)
    return _large_components(_fill_holes(lungs)) | np.asarray(infection, bool)


def infected_share(infection: np.ndarray, lungs: np.ndarray) -> float | None:
    """Infected pixels as a share of the lung pixels (None when no lung is found); at most 1."""
    area = int(np.count_nonzero(lungs))
    return None if area == 0 else float(np.count_nonzero(np.asarray(infection, bool) & lungs) / area)


def count_lungs(lungs: np.ndarray, min_share: float = 0.02) -> int:
    """How many separate lung regions of at least 2% of the slice."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(lungs.astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= min_share * lungs.size).sum())


def lung_card(size: int) -> ModelCard:
    from core.ct import segmentation_card

    return segmentation_card(
        "ct-lungs",
        size,
        title="CT: lung outline (for the infected share)",
        classes=["lung"],
        description="Axial chest CT slice -> both lungs, consolidated lung included; used for the infected share.",
        deployed=False,
        variant="lungs",
        limits=[
            "Trained on pseudo-labels (dark lung joined with the radiologists' infection masks of 42 slices), "
            "not on lung masks drawn by a radiologist: judge its outlines in the gallery that `python -m core.evaluate "
            "ct-lungs` draws (not shipped: it is made from the CT test slices).",
            "A teaching and demo tool, not a diagnosis.",
        ],
        data={"labels": "pseudo-labels: core.lungs.pseudo_lungs(slice, radiologists' infection mask)"},
    )


def evaluate_lungs(
    lung_model: ScanModel, infection_model: ScanModel, slices: Sequence, gallery: Path | None = None
) -> dict[str, Any]:
    """On labelled slices: the computed lungs (lung network + infection network, no radiologist input) against
    the radiologists' infection masks, the lung count and share, and the infected-share error."""
    from core.ct import read_binary, read_grey

    rows, tiles = [], []
    for item in slices:
        grey = read_grey(item.image)
        infection = infection_model.segment(grey) >= (infection_model.card.mask_threshold or 0.5)
        lungs = lung_outline(lung_model.segment(grey), infection, lung_model.card.mask_threshold or 0.5)
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
