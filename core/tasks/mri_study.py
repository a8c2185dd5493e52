"""A brain MRI study (several slices of one patient): read it, segment every slice, measure the tumour volume.

Input: a zip or several files (TIFF, PNG, JPEG or a DICOM series). Slices are ordered by DICOM position
(InstanceNumber, SliceLocation) or by the number at the end of the file name (``..._12.tif``); files
named ``*_mask.*`` (the LGG layout) are read as ground-truth masks and give a Dice per study. A file
that cannot be read is skipped with its reason, and the rest goes on. Slices from different patients
(DICOM PatientID, or file-name prefixes) are still segmented one by one, but no
volume is given: it would add up two patients.

Volume = sum over slices of (mask pixels x pixel area) x slice spacing. DICOM gives the spacing
(PixelSpacing, SpacingBetweenSlices or SliceThickness); other formats have none, so the assumption used
is stated with the figure (and the page lets the user change it).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from core.errors import ScanSightError

MAX_STUDY_SLICES = 300
MASK_NAME = re.compile(r"^(?P<stem>.+)_mask\.(png|tiff?|jpe?g|gif|bmp)$", re.IGNORECASE)
TRAILING_NUMBER = re.compile(r"^(?P<prefix>.*?)[_\-\s]?(?P<number>\d+)\.[A-Za-z0-9]+$")
#: Stated when a format carries no spacing: the LGG slices are 256 px over a ~24 cm field of view, 3 mm apart
#: is a common FLAIR slice spacing; the page lets the user change both.
ASSUMED_PIXEL_MM = 1.0
ASSUMED_SLICE_MM = 3.0


class StudyError(ScanSightError):
    """A study that cannot be used at all (no readable slice, too many slices)."""


@dataclass
class StudySlice:
    """One slice of a study (pixels in [0, 1]), where it sits, and its ground-truth mask if one came with it."""

    name: str
    pixels: np.ndarray
    order: tuple[float, ...]
    pixel_spacing_mm: tuple[float, float] | None = None
    slice_spacing_mm: float | None = None
    owner: str = ""  # a hash of the patient / study identity, never the identity itself
    truth: np.ndarray | None = None


@dataclass
class MriStudy:
    """Readable slices in order, the files skipped (name, why) and the problems that withhold the volume."""

    slices: list[StudySlice]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    mixed_patients: bool = False

    @property
    def has_truth(self) -> bool:
        return any(item.truth is not None for item in self.slices)


def _number(value: str | None) -> float | None:
    """The first number of a DICOM value ("3.0", "-12.5", "0.9\\0.9"), or None."""
    try:
        number = float(str(value).split("\\")[0])
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _float(value: str | None) -> float | None:
    """A positive number (a spacing), or None."""
    number = _number(value)
    return number if number is not None and number > 0 else None


def _owner(image, name: str) -> str:
    """Who the slice belongs to, hashed: the DICOM PatientID, else the file-name prefix."""
    patient = image.patient.get("PatientID", "")
    if patient:
        key = f"dicom:{patient}"
    else:
        match = TRAILING_NUMBER.match(PurePath(name).name)
        key = f"name:{match.group('prefix') if match else ''}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _order(image, name: str, position: int) -> tuple[float, ...]:
    instance = _number(image.technical.get("InstanceNumber"))
    location = _number(image.technical.get("SliceLocation"))
    if instance is not None or location is not None:
        return (0, location if location is not None else 0.0, instance if instance is not None else 0.0)
    match = TRAILING_NUMBER.match(PurePath(name).name)
    return (1, float(match.group("number")), float(position)) if match else (2, 0.0, float(position))


def read_study(files: Sequence[tuple[str, bytes]]) -> MriStudy:
    """Read the slices of one study from (file name, bytes) pairs; zips are opened in memory (bounded)."""
    from core.io.archives import unzip_in_memory
    from core.io.loading import load_image

    members: list[tuple[str, bytes | ScanSightError]] = []
    for name, data in files:
        if name.lower().endswith(".zip"):
            try:
                members += [(f"{name}/{inner}", content) for inner, content in unzip_in_memory(data)]
            except ScanSightError as error:
                members.append((name, error))
        else:
            members.append((name, data))
    images = [(n, d) for n, d in members if not MASK_NAME.match(PurePath(n).name)]
    masks = {match.group("stem"): d for n, d in members if (match := MASK_NAME.match(PurePath(n).name))}
    if len(images) > MAX_STUDY_SLICES:
        raise StudyError(f"The study holds {len(images)} images; ScanSight reads up to {MAX_STUDY_SLICES} slices.")
    slices, skipped = [], []
    for position, (name, data) in enumerate(images):
        short = PurePath(name).name
        if isinstance(data, ScanSightError):
            skipped.append((short, str(data)))
            continue
        try:
            image = load_image(data, short)
        except ScanSightError as error:
            skipped.append((short, str(error)))
            continue
        pixels = image.frame(0)
        if slices and pixels.shape[:2] != slices[0].pixels.shape[:2]:
            skipped.append((short, f"{pixels.shape[1]}x{pixels.shape[0]} px, unlike the study's first slice"))
            continue
        if pixels.ndim == 2:
            pixels = np.repeat(pixels[..., np.newaxis], 3, axis=-1)
        item = StudySlice(
            name=short,
            pixels=pixels[..., :3].astype(np.float32),
            order=_order(image, short, position),
            pixel_spacing_mm=image.pixel_spacing_mm,
            slice_spacing_mm=_float(image.technical.get("SpacingBetweenSlices"))
            or _float(image.technical.get("SliceThickness")),
            owner=_owner(image, short),
        )
        stem = PurePath(short).stem
        truth = masks.get(stem)
        if isinstance(truth, bytes):
            try:
                frame = load_image(truth, f"{stem}_mask.png").frame(0)
                frame = frame.max(axis=-1) if frame.ndim == 3 else frame
                if frame.shape[:2] == pixels.shape[:2]:
                    item.truth = frame > 0.5
            except ScanSightError as error:
                skipped.append((f"{stem}_mask", str(error)))
        slices.append(item)
    if not slices:
        first = f" ({skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise StudyError("None of the files is a readable image slice." + first)
    slices.sort(key=lambda s: s.order)
    return MriStudy(slices=slices, skipped=skipped, mixed_patients=len({s.owner for s in slices}) > 1)


def remove_small_components(masks: np.ndarray, min_voxels: int) -> np.ndarray:
    """Drop 3-D connected components (26-connectivity, across slices) smaller than `min_voxels`."""
    from scipy import ndimage

    if min_voxels <= 0 or not masks.any():
        return masks
    labels, count = ndimage.label(masks, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes >= min_voxels
    keep[0] = False
    return keep[labels]


@dataclass
class StudyResult:
    """Masks and measures of a segmented study."""

    masks: np.ndarray  # (N, H, W) bool, every slice resized to the first slice's size
    areas_pixels: list[int]
    pixel_mm: tuple[float, float]
    slice_mm: float
    spacing_source: str
    volume_ml: float | None
    volume_note: str
    largest_slice: int | None
    dice_vs_truth: float | None = None
    truth_volume_ml: float | None = None


def study_spacing(study: MriStudy, pixel_mm: float | None = None, slice_mm: float | None = None):
    """(pixel row mm, pixel column mm), slice mm, and where each came from (DICOM, the user, or assumed)."""
    first = study.slices[0]
    if first.pixel_spacing_mm:
        pixel, pixel_from = first.pixel_spacing_mm, "DICOM PixelSpacing"
    elif pixel_mm:
        pixel, pixel_from = (pixel_mm, pixel_mm), "given by the user"
    else:
        pixel, pixel_from = (ASSUMED_PIXEL_MM, ASSUMED_PIXEL_MM), "assumed (the files carry no spacing)"
    if first.slice_spacing_mm:
        thickness, slice_from = first.slice_spacing_mm, "DICOM slice spacing"
    elif slice_mm:
        thickness, slice_from = slice_mm, "given by the user"
    else:
        thickness, slice_from = ASSUMED_SLICE_MM, "assumed (the files carry no spacing)"
    source = f"{pixel[0]:g} x {pixel[1]:g} mm pixels, {pixel_from}; {thickness:g} mm between slices, {slice_from}"
    return pixel, thickness, source


def measure_study(
    study: MriStudy, masks: np.ndarray, pixel_mm: float | None = None, slice_mm: float | None = None
) -> StudyResult:
    """Areas, volume in mL and the largest slice of per-slice masks; Dice against ground truth when given."""
    from core.checks.metrics import dice

    pixel, thickness, source = study_spacing(study, pixel_mm, slice_mm)
    areas = [int(m.sum()) for m in masks]
    voxel_ml = pixel[0] * pixel[1] * thickness / 1000.0
    volume = float(sum(areas) * voxel_ml)
    note = f"{sum(areas):,} mask voxels x {voxel_ml * 1000:.3g} mm³ ({source})"
    if study.mixed_patients:
        volume, note = None, "No volume: the slices come from more than one patient or study."
    truth = [s.truth for s in study.slices]
    dice_value = truth_volume = None
    if all(t is not None and t.shape == masks.shape[1:] for t in truth):
        stacked = np.stack(truth)
        dice_value = dice(masks, stacked)
        truth_volume = float(stacked.sum() * voxel_ml)
    return StudyResult(
        masks=masks,
        areas_pixels=areas,
        pixel_mm=pixel,
        slice_mm=thickness,
        spacing_source=source,
        volume_ml=volume,
        volume_note=note,
        largest_slice=int(np.argmax(areas)) if any(areas) else None,
        dice_vs_truth=dice_value,
        truth_volume_ml=truth_volume,
    )
