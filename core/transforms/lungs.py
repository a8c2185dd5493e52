"""The lungs on an axial CT slice, for the infected share: a ResUNet (`ct-lungs`) trained on pseudo-labels.

The data hold no lung masks. Infection lies in the lung by definition, and healthy lung is the dark tissue
inside the chest, so a training slice's lungs are taken as its dark lung regions joined with the radiologists'
infection mask, closed and filled (`pseudo_lungs`). A network trained on those learns to include consolidated
lung, which is as bright as soft tissue and which a threshold alone misses. At inference the lungs are the
network's mask joined with the infection model's mask (`lung_outline`), so the infected share never exceeds 100%,
grown by a thin margin chosen on validation slices (`core.training.ct.tune_outline_margin`).

Validation on the 48 test slices (no lung masks there either, so what exists is used): the share of the
radiologist-marked infection pixels that fall inside the computed lungs, whether two lungs are found, the
lungs' share of the slice, a gallery of every outline for a reader to judge, and the share error: the infection
model's share against the radiologists' share within the same lungs (`core.checks.ct.evaluate_lungs`).
"""

from __future__ import annotations

import cv2
import numpy as np

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


def margin_pixels(margin: float, shape: tuple[int, ...]) -> int:
    """An outline margin given as a share of the slice's shorter side, in whole pixels."""
    return round(margin * min(shape[:2]))


def lung_outline(
    lung_probability: np.ndarray, infection: np.ndarray, threshold: float = 0.5, margin: float = 0.0
) -> np.ndarray:
    """The lungs used for the share: the lung network's mask joined with the infection mask, filled, without
    specks, grown by `margin` (a share of the slice's shorter side: the subpleural rim that the dark-lung
    pseudo-labels leave out); infection is lung by definition, so the share is at most 100%."""
    lungs = (np.asarray(lung_probability) >= threshold) | np.asarray(infection, bool)
    lungs = _large_components(_fill_holes(lungs))
    return _grow_apart(lungs, margin_pixels(margin, lungs.shape)) | np.asarray(infection, bool)


def _grow_apart(mask: np.ndarray, radius: int) -> np.ndarray:
    """Each component grown by `radius` pixels, except where it would come within two pixels of another's reach
    (so not even a diagonal step joins them): two lungs stay two (the count and the outline drawn stay right)."""
    if radius <= 0:
        return mask
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)

    def disc(r: int) -> np.ndarray:
        return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))

    reach = np.zeros(mask.shape, bool)
    claims = np.zeros(mask.shape, np.uint8)
    for index in range(1, count):
        component = (labels == index).astype(np.uint8)
        reach |= cv2.dilate(component, disc(radius)) > 0
        claims += (cv2.dilate(component, disc(radius + 2)) > 0).astype(np.uint8)  # 8-connected: keep 2 px apart
    return mask | (reach & (claims < 2))


def infected_share(infection: np.ndarray, lungs: np.ndarray) -> float | None:
    """Infected pixels as a share of the lung pixels (None when no lung is found); at most 1."""
    area = int(np.count_nonzero(lungs))
    return None if area == 0 else float(np.count_nonzero(np.asarray(infection, bool) & lungs) / area)


def count_lungs(lungs: np.ndarray, min_share: float = 0.02) -> int:
    """How many separate lung regions of at least 2% of the slice."""
    _, _, stats, _ = cv2.connectedComponentsWithStats(lungs.astype(np.uint8), connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= min_share * lungs.size).sum())
