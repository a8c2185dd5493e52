"""Grad-CAM heatmaps (tf-keras-vis) and overlays, after the keras-io Grad-CAM example:
`heatmap` makes the map, `overlay` draws it over the image."""

from __future__ import annotations

import numpy as np

from core.errors import ScanSightError
from core.explain.overlay import normalise_map
from core.io.loading import LoadedImage
from core.models.networks import LAST_CONV
from core.models.scan_model import ScanModel, to_image_geometry

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
