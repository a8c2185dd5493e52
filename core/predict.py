"""Batch prediction CLI: ``python -m core.predict FILES_OR_DIRS... --task pneumonia --csv out.csv``.

Every readable image becomes a row (file, modality found, model, probability, label, flags); a file
that cannot be read becomes a row with its error message and a one-line note on stderr, and the
other files go on. Nothing is written but the CSV.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.cards import WEIGHTS_DIR
from core.data import IMAGE_SUFFIXES
from core.errors import ScanSightError
from core.loading import LoadedImage, load_image
from core.models import ScanModel

COLUMNS = ["file", "modality", "model", "probability", "label", "flags", "error"]


@dataclass
class BatchRow:
    """One line of the batch report."""

    file: str
    modality: str = ""
    model: str = ""
    probability: float | None = None
    label: str = ""
    flags: str = ""
    error: str = ""


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    return files


def header_flags(image: LoadedImage, model: ScanModel) -> list[str]:
    """Warnings from the DICOM header when it does not fit the model."""
    flags = []
    modality = (image.modality or "").upper()
    if model.card.modality == "chest-xray" and modality and modality not in {"CR", "DX", "DR", "OT"}:
        flags.append(f"modality {modality} is not a radiograph")
    if model.card.modality == "brain-mri" and modality and modality != "MR":
        flags.append(f"modality {modality} is not MR")
    part = (image.body_part or "").upper()
    if model.card.modality == "chest-xray" and part and "CHEST" not in part and "THORAX" not in part:
        flags.append(f"body part {part} is not the chest")
    if image.n_frames > 1:
        flags.append(f"{image.n_frames} frames: first frame used")
    return flags


def predict_files(
    files: Sequence[Path], model: ScanModel, batch_size: int = 32, progress: bool = True
) -> list[BatchRow]:
    """Rows in the order of `files`; images are predicted in batches."""
    from tqdm import tqdm

    rows: list[BatchRow] = []
    pending: list[tuple[BatchRow, np.ndarray]] = []

    def flush() -> None:
        if not pending:
            return
        probabilities = model.probabilities(np.stack([prepared for _, prepared in pending]))
        decisions = model.decide(probabilities)
        for (row, _), p, decision in zip(pending, probabilities, decisions, strict=True):
            index = model.card.positive_index
            row.probability = round(float(p[index] if index is not None else p.max()), 4)
            row.label = model.classes[int(decision)]
        pending.clear()

    for path in tqdm(files, disable=not progress, desc="predicting", unit="file"):
        row = BatchRow(file=str(path), model=model.name)
        rows.append(row)
        try:
            image = load_image(Path(path).read_bytes(), Path(path).name)
            row.modality = image.modality or image.source_format.upper()
            row.flags = "; ".join(header_flags(image, model))
            pending.append((row, model.prepare(image)))
        except ScanSightError as error:
            row.error = str(error)
            print(f"{path}: {error}", file=sys.stderr)
        except OSError as error:
            row.error = f"cannot read the file ({error.strerror or error})"
            print(f"{path}: {row.error}", file=sys.stderr)
        if len(pending) >= batch_size:
            flush()
    flush()
    return rows


def write_csv(rows: Sequence[BatchRow], target) -> None:
    writer = csv.DictWriter(target, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({key: ("" if value is None else value) for key, value in asdict(row).items()})


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    parser.add_argument("--task", default="pneumonia", help="model name in weights/ (default: pneumonia)")
    parser.add_argument("--csv", type=Path, default=None, help="write the table here (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder of models and cards")
    args = parser.parse_args(argv)
    try:
        model = ScanModel.load(args.task, args.weights)
    except ScanSightError as error:
        parser.error(str(error))
    if model.card.task == "segmentation":
        parser.error("batch prediction takes a classifier; segmentation models are used from the app")
    files = expand(args.paths)
    if not files:
        parser.error("no image files found")
    rows = predict_files(files, model, args.batch_size)
    if args.csv:
        with open(args.csv, "w", newline="") as handle:
            write_csv(rows, handle)
    else:
        write_csv(rows, sys.stdout)
    failed = sum(1 for row in rows if row.error)
    print(f"{len(rows)} files, {len(rows) - failed} predicted, {failed} could not be read", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
