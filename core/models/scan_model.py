"""`ScanModel`: a Keras model that carries its card (the networks: `core.models.networks`).

Networks are flat functional Keras models (tf-keras-vis needs that) whose last layer outputs
logits named ``logits``; the softmax, the calibration temperature and the decision threshold are
applied here from the card, so the same weights can be recalibrated without retraining.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.errors import ModelCardError, ScanSightError
from core.io.loading import LoadedImage
from core.models.cards import WEIGHTS_DIR, ModelCard, list_cards, sha256_of
from core.transforms.preprocessing import Compose, LungCrop, Resize, build_pipeline

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass
class Prediction:
    """One model's answer for one image."""

    model: str
    classes: list[str]
    probabilities: dict[str, float]
    label: str
    threshold: float | None
    positive_class: str | None
    logits: list[float]

    @property
    def positive_probability(self) -> float | None:
        return None if self.positive_class is None else self.probabilities[self.positive_class]


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = np.asarray(logits, dtype=np.float64) / float(temperature)
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


class ScanModel:
    """A trained network plus its card: preprocessing, classes, temperature and threshold."""

    def __init__(self, card: ModelCard, keras_model: Any):
        self.card = card
        self.keras_model = keras_model
        self.pipeline: Compose = build_pipeline(card.preprocessing)
        self._forward = None
        self._lite = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def classes(self) -> list[str]:
        return self.card.classes

    @classmethod
    def load(cls, name_or_card: str | ModelCard, weights_dir: Path = WEIGHTS_DIR, verify: bool = True) -> ScanModel:
        """Load a model through its card (sha256 checked, Keras safe_mode on)."""
        import keras

        if isinstance(name_or_card, ModelCard):
            card = name_or_card
        else:
            path = Path(weights_dir) / f"{name_or_card}.json"
            if not path.exists():
                raise ModelCardError(f"No model named '{name_or_card}' in {weights_dir}.")
            card = ModelCard.load(path)
        files = [(card.weights_path, card.sha256)]
        members = zip(card.member_paths, card.members, strict=True)
        files += [(path, member.get("sha256", "")) for path, member in members]
        for path, digest in files:
            if not path.exists():
                raise ModelCardError(f"Weights file {path.name} for model '{card.name}' is missing.")
            if verify and digest and sha256_of(path) != digest:
                raise ModelCardError(f"Weights file {path.name} does not match the sha256 in its card.")
        networks = [keras.models.load_model(path, compile=False, safe_mode=True) for path, _ in files]
        if len(networks) == 1:
            return cls(card, networks[0])
        from core.models.networks import average_of, is_pooled_classifier, merged_classifier

        name = card.name.replace("-", "_")
        if all(is_pooled_classifier(network) for network in networks):  # one flat network: Grad-CAM reads it
            return cls(card, merged_classifier(networks, name=name))
        return cls(card, average_of(networks, name=name))

    def prepare(self, image: LoadedImage | np.ndarray, frame: int = 0) -> np.ndarray:
        """Preprocess one image into the network's (H, W, C) float32 input."""
        pixels = image.frame(frame) if isinstance(image, LoadedImage) else np.asarray(image, dtype=np.float32)
        channels = self.card.input.channels
        if channels == 1 and pixels.ndim == 3:
            pixels = pixels[..., :3].mean(axis=-1)
        prepared = self.pipeline(pixels)
        if prepared.ndim == 2:
            prepared = prepared[..., np.newaxis]
        if prepared.shape[-1] != channels:
            prepared = np.repeat(prepared[..., :1], channels, axis=-1)
        expected = (self.card.input.height, self.card.input.width, channels)
        if prepared.shape != expected:
            raise ScanSightError(f"Preprocessing gave shape {prepared.shape}, the model expects {expected}.")
        return prepared.astype(np.float32)

    @property
    def engine(self) -> str:
        """What runs the forward pass: "tensorflow" (the Keras network) or "tflite" (see `use_lite`)."""
        return "tflite" if self._lite is not None else "tensorflow"

    def use_lite(self, threads: int | None = None) -> bool:
        """Run forward passes through a TensorFlow Lite copy of the network (the batch paths: about 3x the
        images per second on CPU); Grad-CAM still uses the Keras network. False, keeping TensorFlow, where the
        network does not convert."""
        from core.models.lite import LiteConversionError, LiteForward

        try:
            self._lite = LiteForward(self.keras_model, threads)
        except LiteConversionError:
            self._lite = None
        return self._lite is not None

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits for a prepared batch (N, H, W, C); a compiled function, no Keras `predict` overhead
        (or the TensorFlow Lite copy after `use_lite`)."""
        if self._lite is not None:
            return self._lite(batch)
        import tensorflow as tf

        with self._lock:  # compiled once, even when two threads share this (cached) model
            if self._forward is None:
                model = self.keras_model
                self._forward = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
        return self._forward(tf.convert_to_tensor(batch, dtype=tf.float32)).numpy()

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        return softmax(self.logits(batch), self.card.temperature)

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Class indices: the threshold on the positive class when there is one, argmax otherwise."""
        probabilities = np.atleast_2d(probabilities)
        positive = self.card.positive_index
        if positive is not None and self.card.threshold is not None and len(self.classes) == 2:
            return np.where(probabilities[:, positive] >= self.card.threshold, positive, 1 - positive)
        return probabilities.argmax(axis=-1)

    def mask_probabilities(self, prepared: np.ndarray, flip: bool | None = None) -> np.ndarray:
        """(N, h, w) mask probabilities on the network grid for a prepared batch; averaged with the
        mirror image's (flipped back) with a test-time flip (`flip`, by default the card's choice)."""
        if self.card.test_time_flip if flip is None else flip:
            return self.plain_and_flipped(prepared)[1]
        return np.asarray(self.logits(prepared)[..., 0], dtype=np.float32)

    def plain_and_flipped(self, prepared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`mask_probabilities` without and with the test-time flip, from one plain and one mirrored pass (for
        choosing the flip on validation)."""
        plain = np.asarray(self.logits(prepared)[..., 0], dtype=np.float32)
        mirrored = np.asarray(self.logits(prepared[:, :, ::-1])[..., 0], dtype=np.float32)[:, :, ::-1]
        return plain, (plain + mirrored) / 2

    def segment(self, image: LoadedImage | np.ndarray, frame: int = 0) -> np.ndarray:
        """Mask probability (H, W) float32 in [0, 1], put back on the frame's geometry (crop and size)."""
        pixels = image.frame(frame) if isinstance(image, LoadedImage) else np.asarray(image, dtype=np.float32)
        probability = self.mask_probabilities(self.prepare(pixels)[np.newaxis])[0]
        return to_image_geometry(self, pixels, probability)

    def segment_many(
        self, frames: Sequence[np.ndarray], batch_size: int = 16, flip: bool | None = None
    ) -> list[np.ndarray]:
        """`segment` for many frames, batched (`flip`: as in `mask_probabilities`)."""
        out: list[np.ndarray] = []
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            probabilities = self.mask_probabilities(np.stack([self.prepare(p) for p in chunk]), flip)
            out += [to_image_geometry(self, p, prob) for p, prob in zip(chunk, probabilities, strict=True)]
        return out

    def predict(self, image: LoadedImage | np.ndarray, frame: int = 0) -> Prediction:
        prepared = self.prepare(image, frame)
        logits = self.logits(prepared[np.newaxis])[0]
        probabilities = softmax(logits, self.card.temperature)
        index = int(self.decide(probabilities)[0])
        return Prediction(
            model=self.name,
            classes=list(self.classes),
            probabilities={name: float(p) for name, p in zip(self.classes, probabilities, strict=True)},
            label=self.classes[index],
            threshold=self.card.threshold,
            positive_class=self.card.positive_class,
            logits=[float(value) for value in logits],
        )


def to_image_geometry(model: ScanModel, pixels: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """Undo the pipeline's crop and resize so a map on the network grid lines up with the displayed image."""
    height, width = pixels.shape[:2]
    current = pixels if pixels.ndim == 2 or model.card.input.channels != 1 else pixels[..., :3].mean(axis=-1)
    box = None
    for step in model.pipeline.steps:
        if isinstance(step, LungCrop):
            box = step.box(current)
            break
        if isinstance(step, Resize):
            break
        current = step(current)
    if box is None:
        return cv2.resize(cam, (width, height), interpolation=cv2.INTER_LINEAR)
    top, bottom, left, right = box
    full = np.zeros((height, width), dtype=np.float32)
    full[top:bottom, left:right] = cv2.resize(cam, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
    return full


def available_models(weights_dir: Path = WEIGHTS_DIR) -> dict[str, ModelCard]:
    """Cards of every committed model, by name."""
    return list_cards(weights_dir)
