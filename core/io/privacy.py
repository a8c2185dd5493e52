"""File names that identify a patient: recognised, and replaced by neutral ones ("upload 1", "file 3").

Archives name files after the patient (the RSNA files are named by their PatientID, TCGA folders carry a study
date). A name is treated as identifying when it contains a hidden DICOM patient field, or looks like an
identifier: a UUID, a long run of hex digits or of digits, a DICOM UID, a date. The app shows neutral names for
those, and reports and tables carry no original name unless the user asks for it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import PurePosixPath

IDENTIFIER_PATTERNS = [
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE),  # UUID
    re.compile(r"(?<![0-9a-z])[0-9a-f]{12,}(?![0-9a-z])", re.IGNORECASE),  # long hex (hashes, accession-like ids)
    re.compile(r"\d{6,}"),  # long digit runs: patient numbers, dates written together (19960909)
    re.compile(r"\d+(\.\d+){3,}"),  # DICOM UIDs (1.2.840.113619...)
    re.compile(r"(19|20)\d{2}[-_.](0[1-9]|1[0-2])[-_.](0[1-9]|[12]\d|3[01])"),  # 1996-09-09
]


def looks_identifying(name: str, hidden_values: Iterable[str] = ()) -> bool:
    """True when the file name holds a hidden DICOM field's value or looks like an identifier."""
    stem = PurePosixPath(str(name).replace("\\", "/")).name
    lowered = stem.lower()
    for value in hidden_values:
        value = str(value).strip().lower()
        if len(value) >= 3 and (value in lowered or lowered.rsplit(".", 1)[0] in value):
            return True
    return any(pattern.search(stem) for pattern in IDENTIFIER_PATTERNS)


def shown_name(name: str, index: int, hidden_values: Iterable[str] = (), prefix: str = "upload") -> str:
    """The name to show on screen: the file's own, or a neutral one when it looks identifying."""
    return f"{prefix} {index}" if not name or looks_identifying(name, hidden_values) else name
