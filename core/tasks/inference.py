"""What the pages ask of the models, as plain functions of arrays and model names.

These run inside a model worker (`core.models.worker.run_model`), so a native crash in TensorFlow ends one request,
not the server. Each child loads a model once, on first use, and keeps it (`resident_model`). Arguments and
results are picklable: frames as NumPy arrays, answers as dataclasses.
"""

from __future__ import annotations

import numpy as np

from core.models.resident import installed, load_every_model, resident_model  # noqa: F401  (the pages call these)
from core.models.scan_model import Prediction


def classify_and_explain(
    model_name: str, pixels: np.ndarray, method: str = "gradcam", target_class: str | None = None
) -> tuple[Prediction, np.ndarray]:
    """The answer for one frame and its heatmap (for `target_class`, default the positive or predicted class)."""
    from core.explain.gradcam import heatmap

    model = resident_model(model_name)
    prediction = model.predict(pixels)
    target = target_class or model.card.positive_class or prediction.label
    return prediction, heatmap(model, pixels, method=method, target_class=target)


def segment_frame(model_name: str, pixels: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None):
    """A segmentation model's thresholded mask and area for one frame."""
    from core.tasks.segmentation import segment

    result = segment(resident_model(model_name), pixels)
    if pixel_spacing_mm:
        from core.tasks.segmentation import mask_area

        result.area_pixels, result.area_mm2 = mask_area(result.mask, pixel_spacing_mm)
    return result


def segment_study(frames: list[np.ndarray]) -> np.ndarray:
    """Tumour masks (N, H, W) bool of a brain MRI study's slices, batched, with the card's test-time flip and
    3-D component filter (components across slices smaller than the card's minimum are dropped)."""
    from core.tasks.mri_study import remove_small_components

    model = resident_model("mri-segmentation")
    masks = np.stack(model.segment_many(frames)) >= float(model.card.mask_threshold or 0.5)
    return remove_small_components(masks, model.card.min_component_voxels)


def ct_infection_and_lungs(pixels: np.ndarray, pixel_spacing_mm: tuple[float, float] | None = None):
    """The infection mask of a CT slice, the lungs (`core.tasks.ct.computed_lungs`; None without the `ct-lungs`
    model) and the infected share of those lungs (at most 1)."""
    from core.tasks.ct import computed_lungs
    from core.transforms.lungs import infected_share

    result = segment_frame("ct-infection", pixels, pixel_spacing_mm)
    if not installed("ct-lungs"):
        return result, None, None
    lung_model = resident_model("ct-lungs")
    lungs = computed_lungs(lung_model, pixels, result.mask)
    return result, lungs, infected_share(result.mask, lungs)


def gate_check(pixels: np.ndarray):
    """The out-of-distribution gate's verdict on one frame."""
    from core.tasks.gate import check_image

    return check_image(resident_model("gate"), pixels)


def adult_probability(pixels: np.ndarray) -> float:
    """P(adult chest X-ray) from the chest backbone's pretext head."""
    from core.checks.shortcut import adult_probability as from_backbone

    return from_backbone(resident_model("chest-backbone"), pixels)


def batch_rows(models: str | dict[str, str], uploads: list[tuple[str, bytes]], use_gate: bool):
    """Rows of the batch table for a chunk of (name, bytes) uploads: one model by name, or one per gate kind."""
    from core.tasks.batch import predict_uploads

    gate = resident_model("gate") if use_gate else None
    chosen = {kind: resident_model(name) for kind, name in models.items()} if isinstance(models, dict) else None
    return predict_uploads([(name, lambda data=data: data) for name, data in uploads],
                           chosen if chosen is not None else resident_model(models), gate=gate)  # fmt: skip
