"""Sample images for demos: a folder named by SCANSIGHT_SAMPLES, else the demo set in assets/samples (test-split
images whose licences allow redistribution, made by `python -m core.cli.make_samples`) and DICOM files that ship with
installed packages (pydicom-data, pydicom). Nothing is downloaded."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from core.data.chest import IMAGE_SUFFIXES

MAX_SAMPLES = 60
#: Package DICOM files worth showing, with what they demonstrate.
PACKAGE_DICOMS = {
    "RG1_UNCR.dcm": "DICOM: adult chest CR, MONOCHROME1, 1955 x 1841, 15-bit",
    "RG1_J2KR.dcm": "DICOM: adult chest CR, JPEG 2000 lossless",
    "MR2_UNCR.dcm": "DICOM: shoulder MR, 1024 x 1024, 12-bit (not a brain: a wrong-kind input)",
    "emri_small.dcm": "DICOM: head MR, 64 x 64, 10 frames (multi-frame demo; too small for the models)",
    "RG3_UNCR.dcm": "DICOM: extremity CR (a wrong body part for the chest models)",
    "CT_small.dcm": "DICOM: small CT slice, 128 x 128, no lungs (fits no model)",
    "emri_small_jpeg_2k_lossless_too_short.dcm": "DICOM: a truncated file (a bad input)",
}
DEMO_SET = Path(__file__).resolve().parents[2] / "assets" / "samples"


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
    samples = demo_set()
    for name, label in PACKAGE_DICOMS.items():
        for directory in _package_dicom_dirs():
            if (directory / name).is_file():
                samples.append(SampleImage(f"{label} ({name})", directory / name))
                break
    return samples


def demo_set(folder: Path = DEMO_SET) -> list[SampleImage]:
    """The committed demo images, labelled by what they are, with their source (assets/samples/samples.json)."""
    return _manifest_entries(folder, "image")


def demo_studies(folder: Path = DEMO_SET) -> list[SampleImage]:
    """The committed demo studies (zips of one test patient's slices and masks) for the Brain MRI page."""
    return _manifest_entries(folder, "study")


def _manifest_entries(folder: Path, kind: str) -> list[SampleImage]:
    manifest = folder / "samples.json"
    if not manifest.is_file():
        return []
    return [
        SampleImage(f"{entry['label']} — {entry['source'].split(',')[0].split(' via ')[0]}", folder / entry["file"])
        for entry in json.loads(manifest.read_text())
        if entry.get("kind", "image") == kind and (folder / entry["file"]).is_file()
    ]
