"""Grad-CAM heatmaps (tf-keras-vis) and overlays, after the keras-io Grad-CAM example:
`heatmap` makes the map, `overlay` draws it over the image."""

from __future__ import annotations

import cv2
import numpy as np

from core.errors import ScanSightError
from core.loading import LoadedImage
from core.models import LAST_CONV, ScanModel, to_image_geometry

CAM_METHODS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


class UnknownCamMethodError(ScanSightError):
    """A CAM method name that is not in `CAM_METHODS`."""


def _explainer(model: ScanModel, method: str):
    """One tf-keras-vis explainer per (model, method), cached on the model object."""
    cache = model.__dict__.setdefault("_explainers", {})
    if method not in cache:
        if method == "gradcam":
            from tf_keras_vis.gradcam import Gradcam as Explainer
        elif method == "gradcam++":
            from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus as Explainer
        else:
            raise UnknownCamMethodError(f"Unknown CAM method '{method}'. Known: {', '.join(CAM_METHODS)}.")
        cache[method] = Explainer(model.keras_model, clone=False)
    return cache[method]


def class_score(model: ScanModel, target_class: str):
    """Score for tf-keras-vis: the target's logit minus the mean of the others' (logit difference for 2 classes)."""
    index = model.classes.index(target_class)
    others = [i for i in range(len(model.classes)) if i != index]

    def score(output):
        import tensorflow as tf

        return output[:, index] - tf.reduce_mean(tf.gather(output, others, axis=1), axis=1)

    return score


def heatmap(
    model: ScanModel,
    image: LoadedImage | np.ndarray,
    method: str = "gradcam",
    target_class: str | None = None,
    frame: int = 0,
) -> np.ndarray:
    """A (H, W) float32 map in [0, 1] at the size of `image` (the frame shown), for `target_class`
    (default: the positive class, or the predicted class when there is none)."""
    pixels = image.frame(frame) if isinstance(image, LoadedImage) else np.asarray(image, dtype=np.float32)
    if target_class is None:
        target_class = model.card.positive_class or model.predict(pixels).label
    prepared = model.prepare(pixels)
    cam = _explainer(model, method)(
        class_score(model, target_class),
        prepared[np.newaxis],
        penultimate_layer=model.card.cam_layer or LAST_CONV,
        expand_cam=True,
    )
    cam = np.nan_to_num(np.asarray(cam[0], dtype=np.float32))
    return to_image_geometry(model, pixels, normalise_map(cam))


def normalise_map(cam: np.ndarray) -> np.ndarray:
    """Rescale a map to [0, 1] (all zeros when it is flat)."""
    low, high = float(cam.min()), float(cam.max())
    return (
        np.zeros_like(cam, dtype=np.float32) if high - low < 1e-12 else ((cam - low) / (high - low)).astype(np.float32)
    )


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] ((H, W) or (H, W, C)) as RGB uint8 for display."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    if image.ndim == 2:
        image = np.repeat(image[..., np.newaxis], 3, axis=-1)
    return (image[..., :3] * 255 + 0.5).astype(np.uint8)


def fit_for_display(image: np.ndarray, max_side: int = 768) -> np.ndarray:
    """Shrink so the longest side is at most `max_side` (display only)."""
    height, width = image.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return image
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def overlay(
    image: np.ndarray, cam: np.ndarray, alpha: float = 0.4, colormap: int = cv2.COLORMAP_JET, max_side: int = 768
) -> np.ndarray:
    """Blend a [0, 1] heatmap, coloured with `colormap`, over the image (opacity `alpha` x sqrt(map)); RGB uint8."""
    base = fit_for_display(to_rgb8(image), max_side)
    cam = cv2.resize(np.asarray(cam, dtype=np.float32), (base.shape[1], base.shape[0]), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.cvtColor(cv2.applyColorMap((np.clip(cam, 0, 1) * 255).astype(np.uint8), colormap), cv2.COLOR_BGR2RGB)
    # Opacity grows with the map's value: cold regions keep the anatomy visible, hot ones are coloured.
    weight = (float(np.clip(alpha, 0, 1)) * np.sqrt(np.clip(cam, 0, 1)))[..., np.newaxis]
    return (base.astype(np.float32) * (1 - weight) + coloured.astype(np.float32) * weight + 0.5).astype(np.uint8)
