"""Test helpers: where the real data is, and generated images, files, data sets and models (no data files are
committed). Shared by the test modules, which never import each other; fixtures built on these live in conftest.py."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

if TYPE_CHECKING:
    from core.models.cards import ModelCard

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


def synthetic_ct(size: int = 96, lesion: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A crude CT slice in [0, 1] (body, two dark lungs, a brighter lesion in the left one) and its lesion mask."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.zeros((size, size), np.float32)
    image[((xx - 0.5) / 0.45) ** 2 + ((yy - 0.5) / 0.38) ** 2 < 1] = 0.7  # body
    lungs = np.zeros((size, size), bool)
    for cx in (0.3, 0.7):
        lungs |= ((xx - cx) / 0.15) ** 2 + ((yy - 0.5) / 0.25) ** 2 < 1
    image[lungs] = 0.1
    mask = np.zeros((size, size), bool)
    if lesion:
        mask = lungs & (((xx - 0.3) / 0.08) ** 2 + ((yy - 0.55) / 0.08) ** 2 < 1)
        image[mask] = 0.45
    return image, mask


def make_chest_set(root: Path, per_class: int = 16) -> Path:
    """A tiny Kermany-style NORMAL/PNEUMONIA folder: one view per normal patient, two per pneumonia patient."""
    rng = np.random.default_rng(0)
    for folder in ("NORMAL", "PNEUMONIA"):
        (root / folder).mkdir(parents=True)
    for index in range(per_class):
        normal = synthetic_chest(64, seed=index).astype(np.float32)
        sick = normal.copy()
        sick[20:44, 12:52] += 90 + rng.normal(0, 10, (24, 40))  # opaque lower lungs
        Image.fromarray(np.clip(normal, 0, 255).astype(np.uint8)).save(root / "NORMAL" / f"IM-{index:04d}-0001.png")
        for view in (1, 2):  # two images of the same patient: must stay on one side of the split
            Image.fromarray(np.clip(sick, 0, 255).astype(np.uint8)).save(
                root / "PNEUMONIA" / f"person{index}_{'bacteria' if index % 2 else 'virus'}_{view}.png"
            )
    return root


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def bomb_png(side: int = 30000) -> bytes:
    """A tiny file whose header claims side x side pixels (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + _png_chunk(b"IEND", b"")
    )


def dicom_bytes(pixels: np.ndarray, photometric: str = "MONOCHROME2", window=None, with_pixels=True) -> bytes:
    """A chest radiograph DICOM (12 bits in 16, 0.2 mm pixels) holding `pixels`, or only its header."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.Modality, ds.BodyPartExamined = "CR", "CHEST"
    ds.PatientName, ds.PatientID = "Doe^Jane", "123456"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [0.2, 0.2]
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if with_pixels:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def make_model(folder: Path, preprocessing=None, name: str = "tiny") -> ModelCard:
    """An untrained tiny 2-class chest classifier saved with its card in `folder`; returns the ModelCard."""
    from core.models.cards import InputSpec, ModelCard, sha256_of
    from core.models.networks import build_classifier

    model = build_classifier((32, 32, 1), 2, widths=(4, 8, 8), name="tiny_cnn")
    model.save(folder / f"{name}.keras")
    card = ModelCard(
        name=name,
        task="pneumonia",
        title="Tiny",
        modality="chest-xray",
        weights=f"{name}.keras",
        classes=["NORMAL", "PNEUMONIA"],
        positive_class="PNEUMONIA",
        threshold=0.5,
        input=InputSpec(32, 32, 1),
        preprocessing=preprocessing or [{"name": "grey"}, {"name": "resize", "size": [32, 32]}, {"name": "normalise"}],
        sha256=sha256_of(folder / f"{name}.keras"),
    )
    card.save(folder / f"{name}.json")
    return card
