"""Small, named, composable preprocessing steps (in the spirit of MONAI transforms).

Every step maps a float32 image in [0, 1] ((H, W) or (H, W, C)) to another one, and is built from
a spec: a name, or a dict ``{"name": ..., **params}``. `Compose` chains them; `build_pipeline`
turns the list stored in a model card into a `Compose`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import cv2
import numpy as np

from core.errors import ScanSightError

STEPS: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator: make a step buildable by its `name`."""
    STEPS[cls.name] = cls
    return cls


@dataclass
class Step:
    """Base class of a preprocessing step."""

    name: ClassVar[str] = "step"
    label: ClassVar[str] = "Step"
    description: ClassVar[str] = ""

    def __call__(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


def _per_channel(image: np.ndarray, function: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    if image.ndim == 2:
        return function(image)
    return np.stack([function(image[..., channel]) for channel in range(image.shape[-1])], axis=-1)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _to_unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float32) / 255.0


@register
@dataclass
class Grey(Step):
    """Average the colour channels into one grey channel."""

    name: ClassVar[str] = "grey"
    label: ClassVar[str] = "Grey"
    description: ClassVar[str] = "Average colour channels into one grey channel."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return image if image.ndim == 2 else image[..., :3].mean(axis=-1).astype(np.float32)


@register
@dataclass
class Resize(Step):
    """Resize to `size` = (height, width) with area interpolation when shrinking."""

    size: tuple[int, int] = (224, 224)
    name: ClassVar[str] = "resize"
    label: ClassVar[str] = "Resize"
    description: ClassVar[str] = "Resize to the model's input size."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        height, width = int(self.size[0]), int(self.size[1])
        if image.shape[:2] == (height, width):
            return image.astype(np.float32, copy=False)
        shrinking = image.shape[0] > height or image.shape[1] > width
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        return cv2.resize(image.astype(np.float32), (width, height), interpolation=interpolation)


@register
@dataclass
class Normalise(Step):
    """Stretch intensities between two percentiles to [0, 1]; each channel on its own when `per_channel`.

    Per channel suits stacked MRI sequences (pre-contrast, FLAIR, post-contrast): stretched together,
    a dark FLAIR stays dark beside bright other channels, and the tumour it shows fades.
    """

    low_percentile: float = 0.5
    high_percentile: float = 99.5
    per_channel: bool = False
    name: ClassVar[str] = "normalise"
    label: ClassVar[str] = "Normalise"
    description: ClassVar[str] = "Stretch intensities between the 0.5th and 99.5th percentile to [0, 1]."

    def _stretch(self, image: np.ndarray) -> np.ndarray:
        low, high = np.percentile(image, [self.low_percentile, self.high_percentile])
        if high - low < 1e-6:
            return np.zeros_like(image, dtype=np.float32)
        return np.clip((image - low) / (high - low), 0, 1).astype(np.float32)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        if self.per_channel and image.ndim == 3:
            return _per_channel(image, self._stretch)
        return self._stretch(image)


@register
@dataclass
class Clahe(Step):
    """Contrast-limited adaptive histogram equalisation (OpenCV)."""

    clip_limit: float = 2.0
    tiles: int = 8
    name: ClassVar[str] = "clahe"
    label: ClassVar[str] = "CLAHE"
    description: ClassVar[str] = (
        "Contrast-limited adaptive histogram equalisation: local contrast, noise kept in check."
    )

    def __call__(self, image: np.ndarray) -> np.ndarray:
        clahe = cv2.createCLAHE(clipLimit=float(self.clip_limit), tileGridSize=(int(self.tiles), int(self.tiles)))
        return _per_channel(image, lambda channel: _to_unit(clahe.apply(_to_uint8(channel))))


@register
@dataclass
class HistogramEqualisation(Step):
    """Global histogram equalisation."""

    name: ClassVar[str] = "histeq"
    label: ClassVar[str] = "Histogram equalisation"
    description: ClassVar[str] = "Global histogram equalisation: spreads intensities over the full range."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return _per_channel(image, lambda channel: _to_unit(cv2.equalizeHist(_to_uint8(channel))))


@register
@dataclass
class GaussianDenoise(Step):
    """Gaussian blur with standard deviation `sigma` in pixels."""

    sigma: float = 1.0
    name: ClassVar[str] = "gaussian"
    label: ClassVar[str] = "Gaussian denoising"
    description: ClassVar[str] = "Gaussian blur: removes fine noise, softens edges."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image.astype(np.float32), (0, 0), float(self.sigma))


@register
@dataclass
class MedianDenoise(Step):
    """Median filter of odd `size`."""

    size: int = 3
    name: ClassVar[str] = "median"
    label: ClassVar[str] = "Median denoising"
    description: ClassVar[str] = "Median filter: removes salt-and-pepper noise, keeps edges."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        size = int(self.size) | 1
        return _per_channel(image, lambda channel: _to_unit(cv2.medianBlur(_to_uint8(channel), size)))


@register
@dataclass
class UnsharpMask(Step):
    """Sharpen: image + amount * (image - blurred)."""

    sigma: float = 2.0
    amount: float = 1.0
    name: ClassVar[str] = "unsharp"
    label: ClassVar[str] = "Unsharp masking"
    description: ClassVar[str] = "Unsharp masking: enhances edges and fine structure."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        image = image.astype(np.float32)
        blurred = cv2.GaussianBlur(image, (0, 0), float(self.sigma))
        return np.clip(image + float(self.amount) * (image - blurred), 0, 1).astype(np.float32)


@register
@dataclass
class EdgeEnhance(Step):
    """Blend the Sobel gradient magnitude into the image."""

    weight: float = 0.5
    name: ClassVar[str] = "edges"
    label: ClassVar[str] = "Edge enhancement"
    description: ClassVar[str] = "Adds the Sobel edge magnitude to the image."

    def __call__(self, image: np.ndarray) -> np.ndarray:
        def enhance(channel: np.ndarray) -> np.ndarray:
            gx = cv2.Sobel(channel.astype(np.float32), cv2.CV_32F, 1, 0, ksize=3)
            gy = cv2.Sobel(channel.astype(np.float32), cv2.CV_32F, 0, 1, ksize=3)
            magnitude = np.sqrt(gx * gx + gy * gy)
            magnitude /= max(float(magnitude.max()), 1e-6)
            return np.clip(channel + float(self.weight) * magnitude, 0, 1).astype(np.float32)

        return _per_channel(image, enhance)


@register
@dataclass
class LungCrop(Step):
    """Crop to the bounding box of the two lung fields, found by thresholding and morphology.

    The lungs are the large dark regions inside the body: Otsu threshold, drop dark regions that
    touch the border (air outside the body), keep the two largest, add a margin. Both lungs must be
    found, one on each side of the midline and of comparable size: the crop never keeps one lung.
    When they are not found the image is returned unchanged, and `find` says why.
    """

    margin: float = 0.08
    min_area_fraction: float = 0.03
    name: ClassVar[str] = "lung_crop"
    label: ClassVar[str] = "Lung crop"
    description: ClassVar[str] = (
        "Crops to both lung fields (Otsu threshold + morphology); unchanged, and said so, when it cannot find both."
    )

    def box(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """(top, bottom, left, right) of the lung region in `image` coordinates, or None."""
        return self.find(image)[0]

    def find(self, image: np.ndarray) -> tuple[tuple[int, int, int, int] | None, str]:
        """The box, or None with the reason the two lung fields were not found."""
        grey = image if image.ndim == 2 else image[..., :3].mean(axis=-1)
        scale = 256.0 / max(grey.shape)
        small = cv2.resize(grey.astype(np.float32), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        small8 = cv2.GaussianBlur(_to_uint8(small), (5, 5), 0)
        _, dark = cv2.threshold(small8, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        dark = cv2.morphologyEx(dark, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
        count, labels, stats, _ = cv2.connectedComponentsWithStats(dark, connectivity=8)
        height, width = small.shape
        candidates = []
        for index in range(1, count):
            x, y, w, h, area = stats[index]
            touches_border = x == 0 or y == 0 or x + w >= width or y + h >= height
            if not touches_border and area >= self.min_area_fraction * height * width:
                candidates.append((area, index))
        if len(candidates) < 2:
            return None, f"found {len(candidates)} lung field(s), not two"
        (first_area, first), (second_area, second) = sorted(candidates, reverse=True)[:2]
        centres = [stats[index, cv2.CC_STAT_LEFT] + stats[index, cv2.CC_STAT_WIDTH] / 2 for index in (first, second)]
        if (centres[0] - width / 2) * (centres[1] - width / 2) >= 0:
            return None, "the two dark regions it found are on the same side: not two lungs"
        if second_area < 0.25 * first_area:
            return None, "one lung field is far smaller than the other: only one lung was found"
        ys, xs = np.nonzero(np.isin(labels, [first, second]))
        top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if (bottom - top) * (right - left) < 0.1 * height * width:
            return None, "the lung fields it found are implausibly small"
        pad_y, pad_x = int(self.margin * height), int(self.margin * width)
        top, bottom = max(0, top - pad_y), min(height, bottom + pad_y)
        left, right = max(0, left - pad_x), min(width, right + pad_x)
        return (
            int(top / scale),
            int(min(grey.shape[0], round(bottom / scale))),
            int(left / scale),
            int(min(grey.shape[1], round(right / scale))),
        ), "cropped to both lung fields"

    def __call__(self, image: np.ndarray) -> np.ndarray:
        box = self.box(image)
        if box is None:
            return image
        top, bottom, left, right = box
        return image[top:bottom, left:right]


@dataclass
class Compose:
    """A chain of steps, applied in order."""

    steps: list[Step] = field(default_factory=list)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        for step in self.steps:
            image = step(image)
        return image

    def intermediates(self, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """The image after each step, labelled, starting with the input."""
        out = [("Original", image)]
        for step in self.steps:
            image = step(image)
            out.append((step.label, image))
        return out

    def spec(self) -> list[dict[str, Any]]:
        return [step.spec() for step in self.steps]


class UnknownStepError(ScanSightError):
    """A pipeline spec names a step that does not exist."""


def build_step(spec: str | dict[str, Any]) -> Step:
    """Build one step from its name or ``{"name": ..., **params}``."""
    if isinstance(spec, str):
        spec = {"name": spec}
    params = dict(spec)
    name = params.pop("name", None)
    if name not in STEPS:
        raise UnknownStepError(f"Unknown preprocessing step '{name}'. Known: {', '.join(sorted(STEPS))}.")
    if "size" in params:
        params["size"] = tuple(params["size"])
    return STEPS[name](**params)


def build_pipeline(specs: Sequence[str | dict[str, Any]]) -> Compose:
    """Build a `Compose` from a list of step specs (as stored in a model card)."""
    return Compose([build_step(spec) for spec in specs])


def available_steps() -> dict[str, str]:
    """Step name -> human label, for menus."""
    return {name: cls.label for name, cls in STEPS.items()}
