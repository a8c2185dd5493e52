"""Segmentation helpers: threshold a probability map, measure it, draw it, export it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.io.loading import LoadedImage
from core.models.cards import WEIGHTS_DIR
from core.models.scan_model import ScanModel


@dataclass
class SegmentationResult:
    """A binary mask at the slice's size, with its area."""

    probability: np.ndarray
    mask: np.ndarray
    threshold: float
    area_pixels: int
    area_mm2: float | None

    @property
    def found(self) -> bool:
        return self.area_pixels > 0


def mask_area(mask: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None) -> tuple[int, float | None]:
    """Area in pixels, and in mm² when the pixel spacing (row, column) is known."""
    pixels = int(np.count_nonzero(mask))
    if not pixel_spacing_mm:
        return pixels, None
    return pixels, float(pixels * pixel_spacing_mm[0] * pixel_spacing_mm[1])


def segment(model: ScanModel, image: LoadedImage | np.ndarray, frame: int = 0) -> SegmentationResult:
    """Run a segmentation model and threshold its output at the card's mask threshold."""
    probability = model.segment(image, frame)
    threshold = float(model.card.mask_threshold or 0.5)
    mask = probability >= threshold
    spacing = image.pixel_spacing_mm if isinstance(image, LoadedImage) else None
    pixels, mm2 = mask_area(mask, spacing)
    return SegmentationResult(probability, mask, threshold, pixels, mm2)


RULES = ("classifier", "mask", "either", "both")


def tumour_decision(probability: float, mask_pixels: int, rule: dict) -> bool:
    """Tumour yes/no for one slice from the classifier's probability and the segmenter's mask area (pixels at
    the slice's size), by a rule chosen on validation patients: {"rule": classifier | mask | either | both,
    "threshold": t, "min_mask_pixels": a}. An empty rule is the classifier at 0.5."""
    by_classifier = probability >= float(rule.get("threshold", 0.5))
    by_mask = mask_pixels >= max(1, int(rule.get("min_mask_pixels", 1)))
    return {"classifier": by_classifier, "mask": by_mask, "either": by_classifier or by_mask,
            "both": by_classifier and by_mask}[rule.get("rule", "classifier")]  # fmt: skip


def rule_decisions(model: ScanModel, probabilities: np.ndarray, frames: list[np.ndarray]) -> np.ndarray:
    """Class indices by the card's decision rule, which also reads the mask model's area on each frame."""
    rule = model.card.decision_rule
    from core.models.resident import resident_model  # the copy the model process already holds, not a second one

    segmenter = resident_model(rule["mask_model"], model.card.path.parent if model.card.path else WEIGHTS_DIR)
    threshold = float(segmenter.card.mask_threshold or 0.5)
    areas = [int((mask >= threshold).sum()) for mask in segmenter.segment_many(frames)]
    positive = model.card.positive_index
    found = [tumour_decision(float(p[positive]), area, rule) for p, area in zip(probabilities, areas, strict=True)]
    return np.array([positive if yes else 1 - positive for yes in found])


def describe_rule(rule: dict) -> str:
    """The rule in words, for pages and reports."""
    classifier = f"P(tumour) ≥ {float(rule.get('threshold', 0.5)):.2f}"
    mask = f"a predicted mask of at least {int(rule.get('min_mask_pixels', 1))} pixels"
    return {"classifier": classifier, "mask": mask, "either": f"{classifier} or {mask}",
            "both": f"{classifier} and {mask}"}[rule.get("rule", "classifier")]  # fmt: skip
