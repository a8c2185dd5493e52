"""The gate on held-out images (`python -m core.evaluate gate ...`) and on pydicom's own test files, whose DICOM
headers say what they are (`pydicom_table`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from core.data.gate import OTHER_SOURCES, medical_sources, other_images
from core.io.loading import load_image
from core.tasks.gate import (
    ACCEPT_PROBABILITY,
    GATE_CLASSES,
    check_image,
    gate_input,
    verdict_from_probabilities,
)
from core.tasks.screening import content_refusal


def evaluate_gate(model, data_root: Path, n_other: int = 1000, seed: int = 0, progress: bool = True) -> dict:
    """False-rejection rate per medical test set and rejection rate of non-medical test images."""
    from tqdm import tqdm

    sources = medical_sources(Path(data_root), "test", seed)
    out: dict[str, Any] = {"per_kind": {}}
    rejected_total = n_total = 0
    for kind, loaders in sources.items():
        verdicts = {}
        for start in tqdm(range(0, len(loaders), 64), desc=kind, disable=not progress):
            pixels = [load() for load in loaders[start : start + 64]]
            batch = np.stack([gate_input(image) for image in pixels])
            for image, probs in zip(pixels, model.probabilities(batch), strict=True):
                verdict = verdict_from_probabilities(probs, model.card.threshold or ACCEPT_PROBABILITY)
                found = "other" if content_refusal(image) else verdict.kind  # the content check runs too
                verdicts[found] = verdicts.get(found, 0) + 1
        wrong = len(loaders) - verdicts.get(kind, 0)
        out["per_kind"][kind] = {
            "n": len(loaders),
            "verdicts": verdicts,
            "false_rejection_rate": wrong / max(len(loaders), 1),
        }
        rejected_total += wrong
        n_total += len(loaders)
    out["false_rejection_rate_all_medical"] = rejected_total / max(n_total, 1)
    other_pixels = list(other_images("test", n_other, seed + 99))
    others = np.stack([gate_input(image) for image in other_pixels])
    threshold = model.card.threshold or ACCEPT_PROBABILITY
    by_model = [verdict_from_probabilities(p, threshold).kind for p in model.probabilities(others)]
    by_content = [bool(content_refusal(image)) for image in other_pixels]
    kinds = ["other" if refused else kind for kind, refused in zip(by_model, by_content, strict=True)]
    per_source: dict[str, dict[str, Any]] = {}
    for index, (image, model_kind, refused) in enumerate(zip(other_pixels, by_model, by_content, strict=True)):
        row = per_source.setdefault(OTHER_SOURCES[index % len(OTHER_SOURCES)], {
            "n": 0, "side_px_min": 10**6, "rejected": 0, "rejected_by_the_model_alone": 0, "rejected_by_content": 0,
        })  # fmt: skip
        row["n"] += 1
        row["side_px_min"] = min(row["side_px_min"], int(min(image.shape[:2])))
        row["rejected"] += int(refused or model_kind == "other")
        row["rejected_by_the_model_alone"] += int(model_kind == "other")
        row["rejected_by_content"] += int(refused)
    out["other"] = {
        "n": n_other,
        "verdicts": {kind: kinds.count(kind) for kind in GATE_CLASSES if kinds.count(kind)},
        "rejection_rate": kinds.count("other") / n_other,
        "rejection_rate_model_alone": by_model.count("other") / n_other,
        "per_source": per_source,
    }
    out["pydicom_test_files"] = pydicom_table(model)
    return out


def pydicom_table(model) -> dict[str, Any]:
    """The gate (model, header and content checks) on every DICOM file of the installed pydicom test data:
    how many decode, what each is taken for, and which check refused it."""
    from core.errors import ScanSightError
    from core.io.samples import _package_dicom_dirs

    files = sorted({path for folder in _package_dicom_dirs() for path in folder.rglob("*.dcm")})
    rows, unreadable = [], 0
    for path in files:
        try:
            image = load_image(path.read_bytes(), path.name, all_frames=False)
        except ScanSightError:
            unreadable += 1
            continue
        verdict = check_image(model, image)
        rows.append({
            "file": path.name, "modality": image.modality or "", "body_part": image.body_part or "",
            "gate": verdict.kind, "refused_by": verdict.refused_by, "why": verdict.why,
        })  # fmt: skip
    counts: dict[str, int] = {}
    for row in rows:
        key = row["gate"] if row["gate"] != "other" else f"refused by the {row['refused_by']}"
        counts[key] = counts.get(key, 0) + 1
    return {"n_files": len(files), "n_decoded": len(rows), "n_unreadable": unreadable, "verdicts": counts,
            "accepted": [row for row in rows if row["gate"] != "other"], "rows": rows}  # fmt: skip
