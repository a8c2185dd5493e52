"""COVID-19 CT infection slices (MedSeg / Inf-Net split): listing and reading.

Layout: ``DIR/images/N.jpg`` with ``DIR/masks/N.png`` (0/255 infection) and optionally
``DIR/masks_multiclass/N.png`` (0 background, 1 ground-glass opacity, 2 consolidation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.io.loading import load_image


@dataclass(frozen=True)
class CtSlice:
    """One CT slice with its masks."""

    image: Path
    mask: Path | None
    multiclass: Path | None


def list_ct(root: Path) -> list[CtSlice]:
    root = Path(root)
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{root} has no images/ folder")
    out = []
    for path in sorted(images.iterdir(), key=lambda p: (len(p.stem), p.stem)):
        if path.suffix.lower() not in {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".dcm"}:
            continue
        mask = root / "masks" / f"{path.stem}.png"
        multi = root / "masks_multiclass" / f"{path.stem}.png"
        out.append(CtSlice(path, mask if mask.exists() else None, multi if multi.exists() else None))
    return out


def read_grey(path: Path) -> np.ndarray:
    return load_image(Path(path).read_bytes(), Path(path).name).grey()


def read_binary(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path)) > 0


def read_classes(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path)).astype(np.uint8)
