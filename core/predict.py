"""Batch prediction CLI: ``python -m core.predict FILES_OR_DIRS... --task pneumonia --csv out.csv``.

Every readable image becomes a row (file, modality found, model, probability, label, flags); a file
that cannot be read becomes a row with its error message and a one-line note on stderr, and the
other files go on. Nothing is written but the CSV.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from core.cards import WEIGHTS_DIR
from core.data import IMAGE_SUFFIXES
from core.errors import CorruptImageError, ImageTooLargeError, ScanSightError
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


def predict_uploads(
    uploads: Iterable[tuple[str, Callable[[], bytes]]],
    model: ScanModel,
    batch_size: int = 32,
    on_progress: Callable[[int], None] | None = None,
    gate: ScanModel | None = None,
) -> list[BatchRow]:
    """Rows for (name, read-bytes) pairs, in order; images are predicted in batches. With the `gate`
    model, an image that is not the kind the model knows is flagged (the batch still predicts it)."""
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

    for done, (name, read) in enumerate(uploads, start=1):
        row = BatchRow(file=name, model=model.name)
        rows.append(row)
        try:
            image = load_image(read(), Path(name).name)
            row.modality = image.modality or image.source_format.upper()
            flags = header_flags(image, model)
            if gate is not None:
                from core.gate import GATE_LABELS, check_image

                verdict = check_image(gate, image)
                if not verdict.fits(model.card.modality):
                    kind = "none of the kinds the models know" if verdict.kind == "other" else GATE_LABELS[verdict.kind]
                    flags.insert(0, f"gate: looks like {kind}, answer not meaningful")
            row.flags = "; ".join(flags)
            pending.append((row, model.prepare(image)))
        except ScanSightError as error:
            row.error = str(error)
        except OSError as error:
            row.error = f"cannot read the file ({error.strerror or error})"
        if len(pending) >= batch_size:
            flush()
        if on_progress:
            on_progress(done)
    flush()
    return rows


def predict_files(
    files: Sequence[Path], model: ScanModel, batch_size: int = 32, progress: bool = True, gate: ScanModel | None = None
) -> list[BatchRow]:
    """Rows for files on disk, with a progress bar; unreadable files get a note on stderr."""
    from tqdm import tqdm

    bar = tqdm(total=len(files), disable=not progress, desc="predicting", unit="file")
    uploads = [(str(path), lambda path=path: Path(path).read_bytes()) for path in files]
    rows = predict_uploads(uploads, model, batch_size, on_progress=lambda done: bar.update(done - bar.n), gate=gate)
    bar.close()
    for row in rows:
        if row.error:
            print(f"{row.file}: {row.error}", file=sys.stderr)
    return rows


MAX_ZIP_MEMBERS = 1000
MAX_ZIP_BYTES = 1024 * 1024 * 1024


def unzip_in_memory(data: bytes) -> list[tuple[str, bytes]]:
    """Image members of a zip archive, read in memory (bounded in count and size: no zip bombs)."""
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise CorruptImageError(f"The zip archive could not be read ({error}).") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ImageTooLargeError(f"The archive holds {len(members)} files; ScanSight reads up to {MAX_ZIP_MEMBERS}.")
    if sum(m.file_size for m in members) > MAX_ZIP_BYTES:
        raise ImageTooLargeError("The archive unpacks to more than 1 GB; split it into smaller ones.")
    out = []
    for member in sorted(members, key=lambda m: m.filename):
        try:
            out.append((member.filename, archive.read(member)))
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError):
            out.append((member.filename, b""))
    return out


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
    parser.add_argument("--no-gate", action="store_true", help="do not flag images the gate says are another kind")
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
    gate = None
    if not args.no_gate and (Path(args.weights) / "gate.json").exists():
        gate = ScanModel.load("gate", args.weights)
    rows = predict_files(files, model, args.batch_size, gate=gate)
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
