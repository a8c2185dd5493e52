"""Grad-CAM and Grad-CAM++ heatmaps, after the keras-io Grad-CAM example: `heatmap` makes the map, `overlay`
(in `core.explain.overlay`) draws it over the image.

One compiled TensorFlow function per (model, cam layer) gives the activations of the card's `cam_layer` and the
gradients of a class's score (weights on the logits, passed in, so one graph serves every class) in one call;
the two methods then weigh the activations in NumPy, as tf-keras-vis does. tf-keras-vis rebuilds a Keras model
and runs eagerly on every call, about 15x slower on CPU; `tests/test_models.py` checks that both methods give
its maps. Both use exactly the layer the card names (tf-keras-vis, by default, moves on to the nearest
convolution before a layer that is not one).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.ndimage import zoom

from core.errors import ScanSightError
from core.explain.overlay import normalise_map
from core.io.loading import LoadedImage
from core.models.networks import LAST_CONV
from core.models.scan_model import ScanModel, to_image_geometry

CAM_METHODS = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}


class UnknownCamMethodError(ScanSightError):
    """A CAM method name that is not in `CAM_METHODS`."""


class CamLayerError(ScanSightError):
    """The card names a CAM layer that the network does not have."""


_BUILD_LOCK = threading.Lock()


def cam_layer_name(model: ScanModel) -> str:
    """The layer whose activations the heatmap weighs: the card's `cam_layer` (default `last_conv`), which must
    give a (N, h, w, channels) map."""
    name = model.card.cam_layer or LAST_CONV
    try:
        layer = model.keras_model.get_layer(name)
    except ValueError as error:
        raise CamLayerError(f"Model '{model.name}' has no layer '{name}' for a heatmap.") from error
    if len(layer.output.shape) != 4:
        raise CamLayerError(f"Layer '{name}' of model '{model.name}' gives no 2-D map ({layer.output.shape}).")
    return name


def score_weights(model: ScanModel, target_class: str) -> np.ndarray:
    """The score explained, as weights on the logits: the target's logit minus the mean of the others' (the
    logit difference for two classes)."""
    if target_class not in model.classes:
        raise ScanSightError(f"Model '{model.name}' has no class '{target_class}' (classes: {model.classes}).")
    others = len(model.classes) - 1
    weights = np.full(len(model.classes), -1.0 / max(others, 1), dtype=np.float32)
    weights[model.classes.index(target_class)] = 1.0
    return weights


def _activations_and_gradients(model: ScanModel) -> Callable[[Any, Any], tuple[Any, Any]]:
    """Compiled once per (model, cam layer): (prepared batch, score weights) -> (the cam layer's activations, the
    score's gradients with respect to them). One graph serves every class."""
    cache = model.__dict__.setdefault("_cam_gradients", {})
    name = cam_layer_name(model)
    with _BUILD_LOCK:
        if name not in cache:
            import keras
            import tensorflow as tf

            network = model.keras_model
            both = keras.Model(network.inputs, [network.outputs[0], network.get_layer(name).output])

            @tf.function(reduce_retracing=True)
            def activations_and_gradients(batch, weights):
                with tf.GradientTape() as tape:
                    logits, activations = both(batch, training=False)
                    scores = tf.linalg.matvec(logits, weights)
                return activations, tape.gradient(scores, activations)

            cache[name] = activations_and_gradients
    return cache[name]


def _gradcam_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): each channel weighted by its mean gradient."""
    return gradients.mean(axis=(1, 2), keepdims=True)


def _gradcam_plus_plus_weights(activations: np.ndarray, gradients: np.ndarray) -> np.ndarray:
    """Grad-CAM++ (Chattopadhay et al. 2018): positive gradients weighted per position by the alphas of the
    higher-order terms. The exp(score) factor of the paper (and tf-keras-vis) scales every map by a constant that
    the [0, 1] scaling removes, so it is left out: it overflows float32 for scores above about 88."""
    second = gradients**2
    third = second * gradients
    denominator = 2.0 * second + third * activations.sum(axis=(1, 2), keepdims=True)
    alphas = second / (denominator + (second == 0.0))
    norm = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / (norm + (norm == 0.0))
    return (np.maximum(gradients, 0.0) * alphas).sum(axis=(1, 2), keepdims=True)


_WEIGHTS = {"gradcam": _gradcam_weights, "gradcam++": _gradcam_plus_plus_weights}


def class_activation_maps(
    model: ScanModel, prepared: np.ndarray, target_class: str, method: str = "gradcam"
) -> np.ndarray:
    """Maps on the network grid for a prepared batch (N, H, W, C): the cam layer's channels weighted (`method`),
    summed, ReLU, zoomed (linear) to (H, W) and scaled to [0, 1] per image."""
    import tensorflow as tf

    if method not in _WEIGHTS:
        raise UnknownCamMethodError(f"Unknown CAM method '{method}'. Known: {', '.join(CAM_METHODS)}.")
    function = _activations_and_gradients(model)
    weights = tf.constant(score_weights(model, target_class))
    activations, gradients = function(tf.convert_to_tensor(prepared, tf.float32), weights)
    if gradients is None:
        raise CamLayerError(f"The score of model '{model.name}' does not depend on its cam layer.")
    activations, gradients = np.asarray(activations, np.float32), np.asarray(gradients, np.float32)
    cams = np.maximum(np.sum(activations * _WEIGHTS[method](activations, gradients), axis=-1), 0.0)
    height, width = prepared.shape[1:3]
    out = []
    for cam in cams:
        cam = zoom(cam, (height / cam.shape[0], width / cam.shape[1]), order=1)
        out.append((cam - cam.min()) / (cam.max() - cam.min() + 1e-7))
    return np.stack(out).astype(np.float32)


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
    cam = class_activation_maps(model, model.prepare(pixels)[np.newaxis], target_class, method)
    cam = np.nan_to_num(np.asarray(cam[0], dtype=np.float32))
    return to_image_geometry(model, pixels, normalise_map(cam))
