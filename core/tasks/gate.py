"""Out-of-distribution gate: is an upload a chest X-ray, a brain MRI slice, a CT slice, or none of them?

A small CNN at 64x64 RGB, trained on our own training images (chest_xray/train and the COVID-19
development part, LGG training patients, the 50 CT training slices) against "other": crops of the
natural and microscopy images that come with scikit-image, faces from its LFW subset, and generated
scenes (shapes, gradients, noise, text pages, stripes). Test images come from parts never trained on:
the official chest X-ray test set, the COVID-19 test part, LGG test patients, the 48 CT test slices,
and for "other" natural images held out from training (scikit-image and scikit-learn's samples),
the other half of the faces and scenes from another seed.

The model's verdict is final only after `screen`: the image content and the DICOM header (`core.tasks.screening`)
can refuse too, and say so. Data: `core.data.gate`; training: `core.training.gate`
(``python -m core.train gate --data ../shared/data --out weights/``); checks: `core.checks.gate`
(``python -m core.evaluate gate --data ../shared/data --out weights/gate.test.eval.json --update-card``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.io.loading import LoadedImage
from core.tasks.screening import content_refusal, header_refusal

GATE_CLASSES = ["chest-xray", "brain-mri", "ct", "other"]
GATE_LABELS = {"chest-xray": "a chest X-ray", "brain-mri": "a brain MRI slice", "ct": "a CT slice", "other": "none"}
GATE_SIZE = 64
ACCEPT_PROBABILITY = 0.5


@dataclass
class GateVerdict:
    """What the gate thinks an image is, and, when it refuses, which check refused (the model, the DICOM header
    or the image content) and why."""

    kind: str
    probabilities: dict[str, float]
    refused_by: str = ""  # "", "model", "header" or "content"
    why: str = ""

    @property
    def accepted(self) -> bool:
        return self.kind != "other"

    @property
    def label(self) -> str:
        return GATE_LABELS[self.kind]

    def fits(self, expected: str) -> bool:
        return self.kind == expected

    def reason(self, expected: str) -> str:
        """A sentence for the user when the image is not what a page expects."""
        p = self.probabilities
        if self.kind == expected:
            return f"The image looks like {GATE_LABELS[expected]} (gate {p[expected]:.0%})."
        if self.kind == "other" and self.refused_by in ("header", "content"):
            source = "The DICOM header" if self.refused_by == "header" else "The image itself"
            return f"{source} rules it out: {self.why}. The models here only know chest X-rays, brain MRI and CT."
        if self.kind == "other":
            return (
                f"The image does not look like a chest X-ray, a brain MRI slice or a CT slice (the gate gives "
                f"{GATE_LABELS[expected]} {p[expected]:.0%}). The models here only know those images."
            )
        return (
            f"The image looks like {GATE_LABELS[self.kind]} ({p[self.kind]:.0%}), not {GATE_LABELS[expected]} "
            f"({p[expected]:.0%})."
        )


def screen(verdict: GateVerdict, image: LoadedImage, frame: int = 0) -> GateVerdict:
    """The gate's final word: the model's verdict, unless the image content or the DICOM header rules it out."""
    if why := content_refusal(image.frame(frame)):
        return GateVerdict("other", verdict.probabilities, "content", why)
    if why := header_refusal(image, verdict.kind if verdict.accepted else None):
        return GateVerdict("other", verdict.probabilities, "header", why)
    if not verdict.accepted:
        return GateVerdict("other", verdict.probabilities, "model", "")
    return verdict


def gate_input(pixels: np.ndarray) -> np.ndarray:
    """(H, W) or (H, W, C) in [0, 1] -> (64, 64, 3) float32: grey repeated, alpha dropped, area resize."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[-1] < 3:  # grey, or grey + alpha
        pixels = pixels[..., 0]
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., np.newaxis], 3, axis=-1)
    pixels = pixels[..., :3]
    resized = cv2.resize(pixels, (GATE_SIZE, GATE_SIZE), interpolation=cv2.INTER_AREA)
    return np.clip(resized, 0, 1).astype(np.float32)


def verdict_from_probabilities(probabilities: np.ndarray, threshold: float = ACCEPT_PROBABILITY) -> GateVerdict:
    """The most likely kind, or 'other' when that kind's probability is below `threshold`."""
    best = int(np.argmax(probabilities))
    kind = GATE_CLASSES[best]
    if probabilities[best] < threshold:
        kind = "other"
    return GateVerdict(kind, {c: float(p) for c, p in zip(GATE_CLASSES, probabilities, strict=True)})


def check_image(model, image: LoadedImage | np.ndarray, frame: int = 0) -> GateVerdict:
    """Run the gate (a `ScanModel` of task 'gate') on one image; a `LoadedImage` also goes through `screen`."""
    pixels = image.frame(frame) if isinstance(image, LoadedImage) else image
    probabilities = model.probabilities(gate_input(pixels)[np.newaxis])[0]
    verdict = verdict_from_probabilities(probabilities, model.card.threshold or ACCEPT_PROBABILITY)
    return screen(verdict, image, frame) if isinstance(image, LoadedImage) else verdict


# ----------------------------------------------------------------------------- data
