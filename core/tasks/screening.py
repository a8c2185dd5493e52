"""What the image itself and its DICOM header say before any model looks: the checks that stand beside the gate's
model (`core.tasks.gate.screen` combines them). A blank frame, a modality no model reads (ultrasound, nuclear medicine,
PET, ...), a modality of another kind than the page's, or a body part that is not the page's rules an image out,
with the reason in words. This is the app's one DICOM header check."""

from __future__ import annotations

import numpy as np

from core.io.loading import LoadedImage

#: The gate's kinds in words (kept here so this module needs no model code).
KIND_LABELS = {"chest-xray": "a chest X-ray", "brain-mri": "a brain MRI slice", "ct": "a CT slice"}

#: DICOM modalities no model here reads, in words.
FOREIGN_MODALITIES = {
    "US": "ultrasound", "NM": "nuclear medicine", "PT": "PET", "XA": "X-ray angiography", "RF": "fluoroscopy",
    "MG": "mammography", "ES": "endoscopy", "OP": "ophthalmic photography", "SM": "microscopy",
    "IO": "intra-oral X-ray", "PX": "panoramic dental X-ray", "OCT": "optical coherence tomography",
    "ECG": "ECG", "SR": "a structured report", "XC": "external camera photography", "GM": "general microscopy",
}  # fmt: skip
#: Header modalities and the one kind each may be.
MODALITY_KIND = {"MR": "brain-mri", "CR": "chest-xray", "DX": "chest-xray", "DR": "chest-xray", "RG": "chest-xray",
                 "CT": "ct"}  # fmt: skip
#: Body parts (BodyPartExamined, or words of the study / series description) each kind may show.
ALLOWED_PARTS = {
    "brain-mri": ("BRAIN", "HEAD", "SKULL", "CRANIUM", "NEURO"),
    "chest-xray": ("CHEST", "THORAX", "LUNG"),
    "ct": ("CHEST", "THORAX", "LUNG"),
}
#: Words that name a body part none of the models knows (used when BodyPartExamined is empty).
OTHER_PARTS = ("SHOULDER", "KNEE", "ABDOMEN", "PELVIS", "SPINE", "WHOLE BODY", "WHOLEBODY", "BREAST", "HIP", "ANKLE",
               "WRIST", "ELBOW", "LIVER", "CARDIAC", "HEART", "PROSTATE", "EXTREMITY", "HAND", "FOOT", "LEG", "ARM",
               "KIDNEY", "BONE", "NECK")  # fmt: skip
MIN_CONTRAST = 0.02  # a frame whose grey values spread less than this (1st to 99th percentile) is blank
#: The fewest pixels a side that a scan may have: the gate's own input; every model here reads more.
MIN_SCAN_SIDE = 64


def header_refusal(image: LoadedImage, kind: str | None = None) -> str:
    """Why the DICOM header rules the image out ('' when it does not): a modality no model reads, a modality of
    another kind than `kind`, or a body part other than the ones `kind` shows. The one DICOM header check."""
    modality = (image.modality or "").upper().strip()
    if not modality:
        return ""
    if modality in FOREIGN_MODALITIES:
        return f"its modality is {modality} ({FOREIGN_MODALITIES[modality]})"
    expected = MODALITY_KIND.get(modality)
    if kind is not None and expected is not None and expected != kind:
        return f"its modality is {modality}, which is not {KIND_LABELS[kind]}"
    kind = kind or expected
    if kind is None:
        return ""
    part = (image.body_part or "").upper().strip()
    words = " ".join(image.technical.get(name, "") for name in ("StudyDescription", "SeriesDescription")).upper()
    if part and not any(allowed in part for allowed in ALLOWED_PARTS[kind]):
        return f"its body part is {part}"
    if not part and (found := next((word for word in OTHER_PARTS if word in words), None)):
        return f"its description names the {found.lower()}"
    return ""


def content_refusal(pixels: np.ndarray) -> str:
    """Why the pixels rule the image out ('' when they do not): smaller than any model's input, or blank or
    nearly constant."""
    height, width = np.shape(pixels)[:2]
    if min(height, width) < MIN_SCAN_SIDE:
        return (
            f"it is only {width} x {height} pixels, smaller than any model here reads "
            f"(a scan has at least {MIN_SCAN_SIDE} pixels a side)"
        )
    grey = np.asarray(pixels, np.float32)
    grey = grey[..., :3].mean(axis=-1) if grey.ndim == 3 else grey
    low, high = np.percentile(grey[:: max(1, grey.shape[0] // 256), :: max(1, grey.shape[1] // 256)], [1, 99])
    if high - low < MIN_CONTRAST:
        return f"it is blank or nearly constant (its grey values spread over {100 * (high - low):.1f}% of the range)"
    return ""
