"""Drawing an explanation: a heatmap (`core.explain.gradcam`) or a mask over the image, in display colours and
size. One function makes the heatmap, these draw it (as the keras-io Grad-CAM example)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image


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


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def mask_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    colour: str | tuple[int, int, int] = "#ff3030",
    alpha: float = 0.45,
    style: str = "fill",
    max_side: int = 768,
) -> np.ndarray:
    """Draw a binary mask over the image, filled (blended) or as a contour; RGB uint8."""
    base = fit_for_display(to_rgb8(image), max_side)
    mask = cv2.resize(mask.astype(np.uint8), (base.shape[1], base.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    rgb = np.array(hex_to_rgb(colour) if isinstance(colour, str) else colour, dtype=np.float32)
    out = base.astype(np.float32)
    if style == "contour":
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        drawn = out.astype(np.uint8).copy()
        cv2.drawContours(drawn, contours, -1, tuple(int(v) for v in rgb), max(1, base.shape[0] // 256))
        return drawn
    alpha = float(np.clip(alpha, 0, 1))
    out[mask] = out[mask] * (1 - alpha) + rgb * alpha
    return (out + 0.5).astype(np.uint8)


def mask_png(mask: np.ndarray) -> bytes:
    """The mask as an 8-bit PNG (0 / 255), at the slice's size."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buffer, format="PNG")
    return buffer.getvalue()
