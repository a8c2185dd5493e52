"""Brain MRI data (LGG, Buda et al. 2019): both on-disk layouts, patient splits, slice loading.

Layouts read:
- ``lgg_mri/<patient>/<patient>_<n>.jpg`` with ``<patient>_<n>_mask.png`` (this project's copy);
- ``kaggle_3m/<patient>/<patient>_<n>.tif`` with ``<patient>_<n>_mask.tif`` (what users download).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from core.io.loading import load_image

SLICE_PATTERN = re.compile(r"^(?P<patient>.+)_(?P<index>\d+)\.(?P<ext>jpe?g|png|tiff?)$", re.IGNORECASE)
MASK_PATTERN = re.compile(r"^(?P<patient>.+)_(?P<index>\d+)_mask\.(?P<ext>png|tiff?|jpe?g)$", re.IGNORECASE)


@dataclass(frozen=True)
class MriSlice:
    """One slice image and its mask file."""

    image: Path
    mask: Path | None
    index: int


@dataclass
class MriPatient:
    """A patient's slices, in slice order."""

    patient_id: str
    slices: list[MriSlice] = field(default_factory=list)


def patient_short_id(folder_name: str) -> str:
    """'TCGA_CS_4941_19960909' -> 'TCGA_CS_4941' (the id in data.csv)."""
    match = re.match(r"(TCGA_[A-Z0-9]+_[A-Z0-9]+)", folder_name)
    return match.group(1) if match else folder_name


def list_patients(root: Path) -> list[MriPatient]:
    """Every patient folder under `root` (either layout), with slices sorted by number."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    folders = sorted({path.parent for path in root.rglob("*") if path.is_file() and MASK_PATTERN.match(path.name)})
    patients = []
    for folder in folders:
        masks = {}
        images = {}
        for path in folder.iterdir():
            if (match := MASK_PATTERN.match(path.name)) is not None:
                masks[int(match.group("index"))] = path
            elif (match := SLICE_PATTERN.match(path.name)) is not None:
                images[int(match.group("index"))] = path
        slices = [MriSlice(images[i], masks.get(i), i) for i in sorted(images)]
        if slices:
            patients.append(MriPatient(folder.name, slices))
    return patients


def split_patients(
    patients: Sequence[MriPatient], seed: int = 0, validation: float = 0.1, test: float = 0.2
) -> tuple[list[MriPatient], list[MriPatient], list[MriPatient]]:
    """Train / validation / test by patient (never by slice), reproducible from `seed`."""
    order = sorted(patients, key=lambda p: p.patient_id)
    permutation = np.random.default_rng(seed).permutation(len(order))
    n_test = round(test * len(order))
    n_validation = round(validation * len(order))
    test_part = [order[i] for i in permutation[:n_test]]
    validation_part = [order[i] for i in permutation[n_test : n_test + n_validation]]
    train_part = [order[i] for i in permutation[n_test + n_validation :]]
    return train_part, validation_part, test_part


def read_slice(path: Path) -> np.ndarray:
    """A slice as (H, W, 3) float32 in [0, 1]; a grey slice is repeated on 3 channels."""
    frame = load_image(Path(path).read_bytes(), Path(path).name).frame(0)
    if frame.ndim == 2:
        frame = np.repeat(frame[..., np.newaxis], 3, axis=-1)
    return frame[..., :3].astype(np.float32)


def read_mask(path: Path | None, shape: tuple[int, int]) -> np.ndarray:
    """A binary mask (bool, H x W); all False when the slice has no mask file."""
    if path is None:
        return np.zeros(shape, dtype=bool)
    frame = load_image(Path(path).read_bytes(), Path(path).name).frame(0)
    if frame.ndim == 3:
        frame = frame.max(axis=-1)
    return frame > 0.5


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a binary mask to (height, width) by area, then threshold at one half."""
    resized = cv2.resize(mask.astype(np.float32), (size[1], size[0]), interpolation=cv2.INTER_AREA)
    return resized >= 0.5
