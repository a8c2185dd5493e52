"""Sample images for demos: a folder named by SCANSIGHT_SAMPLES, else DICOM files that ship with
installed packages (pydicom-data, pydicom). Nothing is downloaded and nothing from ../shared is committed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from core.data import IMAGE_SUFFIXES

MAX_SAMPLES = 60
#: Package DICOM files worth showing, with what they demonstrate.
PACKAGE_DICOMS = {
    "RG1_UNCR.dcm": "Chest CR, MONOCHROME1, 1955 x 1841, 15-bit",
    "RG1_J2KR.dcm": "Chest CR, JPEG 2000 lossless",
    "MR2_UNCR.dcm": "Head MR, 1024 x 1024, 12-bit, with pixel spacing",
    "emri_small.dcm": "Head MR, 10 frames (multi-frame)",
    "RG3_UNCR.dcm": "Extremity CR: a wrong body part for the chest model",
    "CT_small.dcm": "CT slice: a wrong modality for every model",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "A truncated file: a bad input",
}


@dataclass(frozen=True)
class SampleImage:
    """One sample: a label for menus and where its bytes are."""

    label: str
    path: Path

    def read(self) -> bytes:
        return self.path.read_bytes()


def _package_dicom_dirs() -> list[Path]:
    folders = []
    try:
        import data_store  # the pydicom-data package

        folders.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    try:
        import pydicom.data

        folders.append(Path(pydicom.data.__file__).parent / "test_files")
    except ImportError:
        pass
    return [folder for folder in folders if folder.is_dir()]


def list_samples(folder: str | os.PathLike | None = None) -> list[SampleImage]:
    """Samples from `folder` (or $SCANSIGHT_SAMPLES) when set, else the package DICOM files."""
    folder = folder or os.environ.get("SCANSIGHT_SAMPLES")
    if folder and Path(folder).is_dir():
        root = Path(folder)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        return [SampleImage(str(p.relative_to(root)), p) for p in files[:MAX_SAMPLES]]
    samples = []
    for name, label in PACKAGE_DICOMS.items():
        for directory in _package_dicom_dirs():
            if (directory / name).is_file():
                samples.append(SampleImage(f"{label} ({name})", directory / name))
                break
    return samples
