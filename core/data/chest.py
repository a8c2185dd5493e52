"""Data sets on disk: listing, labels, patient ids, patient-level splits, and loading into arrays."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.io.loading import load_image

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm"}


@dataclass(frozen=True)
class Sample:
    """One labelled image file."""

    path: Path
    label: int
    patient: str


def chest_patient_id(file_name: str) -> str:
    """Patient id from a Kermany file name: 'person123_bacteria_45.jpeg' -> 'person123',
    'IM-0115-0001.jpeg' -> 'IM-0115', 'NORMAL2-IM-1427-0001.jpeg' -> 'NORMAL2-IM-1427'."""
    stem = Path(file_name).stem
    match = re.match(r"(person\d+)_", stem)
    if match:
        return match.group(1)
    match = re.match(r"(.+)-\d+$", stem)
    return match.group(1) if match else stem


def pneumonia_kind(file_name: str) -> str:
    """'bacteria', 'virus' or 'normal' from a Kermany file name."""
    lowered = file_name.lower()
    if "bacteria" in lowered:
        return "bacteria"
    if "virus" in lowered:
        return "virus"
    return "normal"


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def find_class_dir(root: Path, name: str) -> Path:
    """A sub-folder of `root` named `name`, matched case-insensitively."""
    for child in Path(root).iterdir():
        if child.is_dir() and child.name.lower() == name.lower():
            return child
    raise FileNotFoundError(f"{root} has no '{name}/' folder.")


def list_labelled(root: Path, class_dirs: Sequence[str]) -> list[Sample]:
    """Samples from `root/<class>/` folders; the label is the index of the class folder."""
    samples = []
    for label, name in enumerate(class_dirs):
        for path in _images_in(find_class_dir(Path(root), name)):
            samples.append(Sample(path, label, f"{name}/{chest_patient_id(path.name)}"))
    return samples


def list_pneumonia_types(root: Path) -> list[Sample]:
    """NORMAL=0, bacterial=1, viral=2 from the Kermany layout."""
    kinds = {"normal": 0, "bacteria": 1, "virus": 2}
    samples = []
    for name in ("NORMAL", "PNEUMONIA"):
        for path in _images_in(find_class_dir(Path(root), name)):
            samples.append(Sample(path, kinds[pneumonia_kind(path.name)], f"{name}/{chest_patient_id(path.name)}"))
    return samples


COVID_CLASSES = ["NORMAL", "COVID"]


def list_covid(root: Path) -> list[Sample]:
    """COVID-19 Radiography layout: ``Normal/`` = 0, ``COVID/`` = 1. The set has no patient ids, so
    each file stands for itself (the card says so)."""
    samples = []
    for label, name in enumerate(["Normal", "COVID"]):
        for path in _images_in(find_class_dir(Path(root), name)):
            samples.append(Sample(path, label, f"{name}/{path.stem}"))
    return samples


#: The COVID-19 set's fixed test part: 20% of the images, stratified, seed 0 (written here once; every module that
#: needs the development or the test part calls `covid_split` or `covid_holdout`).
COVID_TEST_FRACTION, COVID_TEST_SEED = 0.2, 0


def covid_holdout(
    samples: Sequence[Sample], test_fraction: float = COVID_TEST_FRACTION, seed: int = COVID_TEST_SEED
) -> tuple[list, list]:
    """(development, test): the fixed, stratified hold-out test part of the COVID-19 set."""
    return split_by_patient(samples, test_fraction, seed + 1000)


def covid_split(root: Path) -> tuple[list[Sample], list[Sample]]:
    """(development, test) of the COVID-19 Radiography folder `root`."""
    return covid_holdout(list_covid(root))


def split_by_patient(
    samples: Sequence[Sample], validation_fraction: float = 0.15, seed: int = 0
) -> tuple[list[Sample], list[Sample]]:
    """Split so that no patient is in both parts; stratified by each patient's first label."""
    rng = np.random.default_rng(seed)
    by_label: dict[int, list[str]] = {}
    first_label: dict[str, int] = {}
    for sample in samples:
        first_label.setdefault(sample.patient, sample.label)
    for patient, label in sorted(first_label.items()):
        by_label.setdefault(label, []).append(patient)
    validation_patients: set[str] = set()
    for label in sorted(by_label):
        patients = by_label[label]
        rng.shuffle(patients)
        validation_patients.update(patients[: round(validation_fraction * len(patients))])
    train = [s for s in samples if s.patient not in validation_patients]
    validation = [s for s in samples if s.patient in validation_patients]
    return train, validation


def load_arrays(
    paths: Sequence[Path],
    prepare: Callable[[object], np.ndarray],
    workers: int = 2,
    progress: bool = True,
) -> np.ndarray:
    """Decode and preprocess files into one (N, H, W, C) float32 array."""
    from tqdm import tqdm

    def one(path: Path) -> np.ndarray:
        return prepare(load_image(Path(path).read_bytes(), Path(path).name))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(tqdm(pool.map(one, paths), total=len(paths), disable=not progress, desc="loading", unit="img"))
    return np.stack(arrays).astype(np.float32)
