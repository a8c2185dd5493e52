"""The bad-input corpus, made by code: each case is a file a user might upload and what must happen."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from tests.helpers import DATA, bomb_png, dicom_bytes, encode, png_bytes, synthetic_chest


@dataclass(frozen=True)
class Case:
    """`expect` is 'loads' or a phrase the error message must contain (lower case)."""

    id: str
    name: str
    data: bytes
    expect: str


def _save(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def multipage_tiff(pages: int = 3) -> bytes:
    frames = [Image.fromarray(synthetic_chest(96, seed=i)) for i in range(pages)]
    return _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def corpus() -> list[Case]:
    chest = synthetic_chest()
    rgba = np.dstack([np.repeat(chest[..., None], 3, axis=-1), np.full(chest.shape, 200, np.uint8)])
    cases = [
        Case("empty", "empty.png", b"", "empty"),
        Case("text-renamed-png", "notes.png", b"patient notes, not an image\n" * 20, "not an image"),
        Case("truncated-png", "cut.png", png_bytes(chest)[:300], "damaged or truncated"),
        Case("truncated-jpeg", "cut.jpg", encode(chest, "JPEG")[:500], "damaged or truncated"),
        Case("bomb-30000px", "bomb.png", bomb_png(), "too large"),
        Case("1x1", "tiny.png", png_bytes(np.zeros((1, 1), np.uint8)), "too small"),
        Case("16-bit-png", "deep.png", png_bytes(chest.astype(np.uint16) * 257), "loads"),
        Case("rgba-png", "alpha.png", png_bytes(rgba, mode="RGBA"), "loads"),
        Case("cmyk-jpeg", "print.jpg", _save(Image.fromarray(chest).convert("CMYK"), "JPEG"), "loads"),
        Case("palette-gif-renamed", "scan.png", _save(Image.fromarray(chest).convert("P"), "GIF"), "gif"),
        Case("bmp-renamed", "scan.jpg", _save(Image.fromarray(chest), "BMP"), "bmp"),
        Case("multipage-tiff", "stack.tif", multipage_tiff(), "loads"),
        Case("dicom-without-pixels", "header.dcm", dicom_bytes(np.zeros((8, 8)), with_pixels=False), "no pixel"),
    ]
    too_short = DATA / "dicom" / "emri_small_jpeg_2k_lossless_too_short.dcm"
    if too_short.exists():
        cases.append(Case("too-short-dicom", too_short.name, too_short.read_bytes(), "truncated"))
    return cases
