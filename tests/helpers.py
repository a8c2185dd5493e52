"""Test helpers: where the real data is, and generated images (no data files are committed)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SCANSIGHT_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A path under the shared data folder; the test is skipped (with the reason) when it is missing."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available: {path} is missing (set SCANSIGHT_DATA to the data folder)")
    return path


def png_bytes(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format="PNG")
    return buffer.getvalue()


def encode(array: np.ndarray, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def synthetic_chest(size: int = 224, seed: int = 0) -> np.ndarray:
    """A crude chest-like picture: a bright body on a dark background with two dark lung fields."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.full((size, size), 0.05)
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.55) / 0.5) ** 2 < 1
    image[body] = 0.75
    for cx in (0.33, 0.67):
        lung = ((xx - cx) / 0.13) ** 2 + ((yy - 0.5) / 0.27) ** 2 < 1
        image[lung] = 0.25
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(image * 255, 0, 255).astype(np.uint8)
