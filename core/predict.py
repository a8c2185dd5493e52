"""Batch prediction CLI: ``python -m core.predict FILES_OR_DIRS_OR_ZIPS... --task auto --csv out.csv``.

Every file becomes a row: file, modality found, the gate's verdict, the model used, ``p_<class>`` for each of
its classes, the label, flags and the error. With ``--task auto`` (the default) the gate decides which model
answers each image (chest X-rays: ``--chest-task``, default pneumonia; brain MRI: mri-tumour); with a named
task, images the gate says are another kind get no label and no probabilities, only a flag. A file that
cannot be read becomes a row with its error, and the other files go on. Nothing is written but the CSV.
With ``--engine ray --out FOLDER`` the same rows come from Ray Data actors (`core.archive`), as Parquet and CSV.
(Just over 400 lines: the rows, the bounded zip reader and the spreadsheet-safe cells stay in one module
because the Batch page, this CLI and the Ray path all share them.)
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.cards import WEIGHTS_DIR
from core.data import IMAGE_SUFFIXES
from core.errors import CorruptImageError, ImageTooLargeError, ScanSightError
from core.loading import MAX_FILE_BYTES, LoadedImage, load_image, read_capped
from core.models import ScanModel
from core.segmentation import rule_decisions

LEADING_COLUMNS = ["file", "modality", "gate", "model"]
TRAILING_COLUMNS = ["label", "flags", "error"]
#: What ``--task auto`` uses for each kind the gate recognises (chest X-rays: the chosen chest question).
AUTO_MODELS = {"chest-xray": "pneumonia", "brain-mri": "mri-tumour"}


@dataclass
class BatchRow:
    """One line of the batch report."""

    file: str
    modality: str = ""
    gate: str = ""
    model: str = ""
    probabilities: dict[str, float] = field(default_factory=dict)
    label: str = ""
    flags: str = ""
    error: str = ""

    @property
    def answered(self) -> bool:
        return bool(self.label)

    def record(self) -> dict[str, object]:
        """The row as CSV / table cells, one ``p_<class>`` cell per class."""
        cells = {key: getattr(self, key) for key in (*LEADING_COLUMNS, *TRAILING_COLUMNS)}
        cells.update({f"p_{name}": value for name, value in self.probabilities.items()})
        return cells


def columns_for(rows: Sequence[BatchRow]) -> list[str]:
    """The table's columns: the fixed ones around every ``p_<class>`` that any row has, in order of appearance."""
    probability_columns = list(dict.fromkeys(f"p_{name}" for row in rows for name in row.probabilities))
    return [*LEADING_COLUMNS, *probability_columns, *TRAILING_COLUMNS]


def named_for_output(rows: Sequence[BatchRow], keep: str = "plain") -> list[BatchRow]:
    """Rows with the file names an output may carry: ``keep="all"`` the originals, ``"plain"`` the originals except
    identifier-like ones (UUIDs, long numbers, UIDs, dates: "file N" instead), ``"none"`` only "file N"."""
    from dataclasses import replace

    from core.privacy import looks_identifying

    out = []
    for index, row in enumerate(rows, start=1):
        parts = str(row.file).replace("\\", "/").split("/")
        hide = keep == "none" or (keep == "plain" and any(looks_identifying(part) for part in parts))
        out.append(replace(row, file=f"file {index}") if hide else row)
    return out


def summary(rows: Sequence[BatchRow]) -> str:
    failed = sum(1 for row in rows if row.error)
    answered = sum(1 for row in rows if row.answered)
    return (
        f"{len(rows)} files: {answered} answered, {len(rows) - answered - failed} without an answer "
        f"(the gate found no model for them), {failed} could not be read"
    )


def expand(paths: Iterable[Path]) -> list[Path]:
    """Files as given, and the image files inside folders (recursively, sorted)."""
    files: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in {*IMAGE_SUFFIXES, ".zip"})
        else:
            files.append(path)
    return files


def header_flags(image: LoadedImage, model: ScanModel) -> list[str]:
    """Flags from the image itself: the DICOM header's refusal (the gate's header check) and extra frames."""
    from core.screening import header_refusal

    flags = []
    if why := header_refusal(image, model.card.modality if model.card.modality != "any" else None):
        flags.append(f"DICOM header: {why}")
    if image.n_frames > 1:
        flags.append(f"{image.n_frames} frames: first frame used")
    return flags


def gate_text(verdict) -> str:
    """The gate's verdict in a few words for a flag."""
    from core.gate import GATE_LABELS

    if verdict.refused_by == "header":
        return f"ruled out by the DICOM header ({verdict.why})"
    if verdict.refused_by == "content":
        return f"ruled out by the image ({verdict.why})"
    kind = verdict.kind
    return "looks like " + ("none of the kinds the models know" if kind == "other" else GATE_LABELS[kind])


def predict_uploads(
    uploads: Iterable[tuple[str, Callable[[], bytes | ScanSightError]]],
    model: ScanModel | dict[str, ScanModel],
    batch_size: int = 32,
    on_progress: Callable[[int], None] | None = None,
    gate: ScanModel | None = None,
) -> list[BatchRow]:
    """Rows for (name, read-bytes) pairs, in order; images are predicted in batches per model.

    `model` is one classifier, or one per gate kind (``{"chest-xray": ..., "brain-mri": ...}``, which needs the
    `gate`). With the gate, an image that is not a kind some model here knows gets no label and no
    probabilities, only its gate verdict and a flag; without it, the single model answers every image."""
    from core.gate import GATE_LABELS, check_image

    models = model if isinstance(model, dict) else None
    if models is not None and gate is None:
        raise ValueError("choosing the model per image needs the gate")
    rows: list[BatchRow] = []
    pending: dict[str, list[tuple[BatchRow, np.ndarray]]] = {}
    by_name: dict[str, ScanModel] = {}

    def flush(name: str) -> None:
        chosen, queue = by_name[name], pending.pop(name, [])
        if not queue:
            return
        probabilities = chosen.probabilities(np.stack([prepared for _, prepared, _ in queue]))
        decisions = chosen.decide(probabilities)
        if chosen.card.decision_rule:  # e.g. tumour yes/no: the classifier and the mask, as on the MRI page
            decisions = rule_decisions(chosen, probabilities, [pixels for _, _, pixels in queue])
        for (row, _, _), p, decision in zip(queue, probabilities, decisions, strict=True):
            row.probabilities = {c: round(float(v), 4) for c, v in zip(chosen.classes, p, strict=True)}
            row.label = chosen.classes[int(decision)]

    for done, (name, read) in enumerate(uploads, start=1):
        row = BatchRow(file=name)
        rows.append(row)
        try:
            content = read()
            if isinstance(content, ScanSightError):  # a zip member that could not be read
                raise content
            image = load_image(content, Path(name).name)
            row.modality = image.modality or image.source_format.upper()
            chosen = model if models is None else None
            flags: list[str] = []
            if gate is not None:
                verdict = check_image(gate, image)
                kind = verdict.kind
                row.gate = f"{GATE_LABELS[kind].removeprefix('a ')} {verdict.probabilities[kind]:.0%}"
                if kind == "other":
                    row.gate = f"refused ({max(verdict.probabilities.values()):.0%} at most for any kind)"
                verdict_text = gate_text(verdict)
                if verdict.refused_by in ("header", "content"):
                    row.gate = f"refused ({verdict.refused_by})"
                if models is not None:
                    chosen = models.get(kind)
                    if chosen is None:
                        flags.append(f"gate: {verdict_text}; no batch model answers it (no label)")
                elif not verdict.fits(model.card.modality):
                    flags.append(f"gate: {verdict_text}, not what {model.name} knows (no label)")
                    chosen = None
            if chosen is not None:
                row.model = chosen.name
                flags = header_flags(image, chosen) + flags
                by_name[chosen.name] = chosen
                pixels = image.frame(0) if chosen.card.decision_rule else None
                pending.setdefault(chosen.name, []).append((row, chosen.prepare(image), pixels))
                if len(pending[chosen.name]) >= batch_size:
                    flush(chosen.name)
            row.flags = "; ".join(flags)
        except ScanSightError as error:
            row.error = str(error)
        except OSError as error:
            row.error = f"cannot read the file ({error.strerror or error})"
        if on_progress:
            on_progress(done)
    for name in list(pending):
        flush(name)
    return rows


def predict_files(
    files: Sequence[Path],
    model: ScanModel | dict[str, ScanModel],
    batch_size: int = 32,
    progress: bool = True,
    gate: ScanModel | None = None,
) -> list[BatchRow]:
    """Rows for files on disk, with a progress bar; unreadable files get a note on stderr."""
    from tqdm import tqdm

    uploads: list[tuple[str, Callable[[], bytes | ScanSightError]]] = []
    for path in files:
        if Path(path).suffix.lower() == ".zip":
            try:
                members = unzip_in_memory(read_capped(path))
            except ScanSightError as error:
                uploads.append((str(path), lambda error=error: error))
                continue
            uploads += [(f"{path}/{name}", lambda content=content: content) for name, content in members]
        else:
            uploads.append((str(path), lambda path=path: _read_or_error(path)))
    bar = tqdm(total=len(uploads), disable=not progress, desc="predicting", unit="file")
    rows = predict_uploads(uploads, model, batch_size, on_progress=lambda done: bar.update(done - bar.n), gate=gate)
    bar.close()
    for row in rows:
        if row.error:
            print(f"{safe_cell(row.file)}: {row.error}", file=sys.stderr)
    return rows


def _read_or_error(path: Path) -> bytes | ScanSightError:
    try:
        return read_capped(path)
    except ScanSightError as error:  # becomes the file's error row
        return error


MAX_ZIP_MEMBERS = 1000
#: What a whole archive may unpack to: the same as one file (a zip is no way around the upload limit).
MAX_ZIP_BYTES = MAX_FILE_BYTES
ZIP_CHUNK = 1024 * 1024


class ZipMemberError(ScanSightError):
    """One member of an archive cannot be read (encrypted, damaged, or larger than it declares)."""


def unzip_in_memory(data: bytes) -> list[tuple[str, bytes | ScanSightError]]:
    """Members of a zip archive, read in memory, bounded: at most `MAX_ZIP_MEMBERS` files and `MAX_ZIP_BYTES`
    unpacked in all, by the declared sizes first and then by the bytes actually inflated (read in 1 MB chunks,
    so a member that lies about its size is stopped at the limit). A member that cannot be read comes back
    as its error, and the others go on."""
    import io
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError) as error:
        raise CorruptImageError(f"The zip archive could not be read ({error}).") from None
    if len(members) > MAX_ZIP_MEMBERS:
        raise ImageTooLargeError(f"The archive holds {len(members)} files; ScanSight reads up to {MAX_ZIP_MEMBERS}.")
    declared = sum(m.file_size for m in members)
    if declared > MAX_ZIP_BYTES:
        raise ImageTooLargeError(
            f"The archive unpacks to {declared / 1e6:.0f} MB; ScanSight reads up to {MAX_ZIP_BYTES / 1e6:.0f} MB "
            "in all: split it into smaller ones."
        )
    out: list[tuple[str, bytes | ScanSightError]] = []
    budget = MAX_ZIP_BYTES
    for member in sorted(members, key=lambda m: m.filename):
        if member.flag_bits & 0x1:
            out.append(
                (member.filename, ZipMemberError("This file in the archive is encrypted; ScanSight cannot read it."))
            )
            continue
        try:
            content = _read_member(archive, member, min(member.file_size, budget))
        except ZipMemberError as error:
            out.append((member.filename, error))
            continue
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError) as error:
            out.append(
                (member.filename, ZipMemberError(f"This file in the archive is damaged ({type(error).__name__})."))
            )
            continue
        budget -= len(content)
        out.append((member.filename, content))
    return out


def _read_member(archive, member, limit: int) -> bytes:
    """A member's bytes, read in chunks; refused as soon as it inflates past its declared size or `limit`."""
    parts, size = [], 0
    with archive.open(member) as handle:
        while chunk := handle.read(ZIP_CHUNK):
            size += len(chunk)
            if size > limit:
                raise ZipMemberError(
                    "This file in the archive unpacks to more than it declares, or past the archive's limit "
                    f"({MAX_ZIP_BYTES / 1e6:.0f} MB in all)."
                )
            parts.append(chunk)
    return b"".join(parts)


MAX_CELL_CHARS = 255
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A value as a spreadsheet cannot turn against its reader: text that could start a formula is quoted with
    a leading apostrophe, names that are not valid UTF-8 or hold control characters are made printable, and
    long text is shortened in the middle. Numbers stay numbers."""
    if value is None:
        return ""
    if isinstance(value, int | float):
        return value
    text = str(value).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(character if character.isprintable() else "?" for character in text)
    if len(text) > MAX_CELL_CHARS:
        half = (MAX_CELL_CHARS - 1) // 2
        text = text[:half] + "…" + text[-half:]
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return text


def write_csv(rows: Sequence[BatchRow], target) -> None:
    """The table as CSV; every cell through `safe_cell`, so no row can fail to be written."""
    writer = csv.DictWriter(target, fieldnames=columns_for(rows), restval="")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: safe_cell(value) for key, value in row.record().items()})


def open_output(path: Path):
    """Open the CSV for writing before any work starts: a missing folder or a read-only place fails at once."""
    if not path.parent.is_dir():
        raise SystemExit(f"error: the folder for --csv does not exist: {safe_cell(str(path.parent))}")
    try:
        return open(path, "w", newline="", encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"error: cannot write --csv there ({error.strerror or type(error).__name__})") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.predict", description=__doc__)
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders")
    parser.add_argument(
        "--task", default="auto", help="'auto' (default: the gate picks the model per image) or a classifier's name"
    )
    parser.add_argument("--chest-task", default="pneumonia", help="with --task auto: the chest X-ray question")
    parser.add_argument("--csv", type=Path, default=None, help="write the table here (default: stdout)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="folder of models and cards")
    parser.add_argument("--no-gate", action="store_true", help="do not flag images the gate says are another kind")
    parser.add_argument(
        "--keep-names", action="store_true",
        help="write every file name as it is (default: identifier-like names, such as a PatientID, become 'file N')",
    )  # fmt: skip
    from core.archive import add_ray_arguments, main_from_predict

    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    if args.engine == "ray":
        return main_from_predict(args, parser)
    gate = None
    if not args.no_gate and (Path(args.weights) / "gate.json").exists():
        gate = ScanModel.load("gate", args.weights)
    if args.task == "auto" and gate is None:
        parser.error("--task auto needs the gate: name a task, or leave out --no-gate")
    try:
        if args.task == "auto":
            wanted = {**AUTO_MODELS, "chest-xray": args.chest_task}
            model = {kind: ScanModel.load(name, args.weights) for kind, name in wanted.items()
                     if (Path(args.weights) / f"{name}.json").exists()}  # fmt: skip
        else:
            model = ScanModel.load(args.task, args.weights)
    except ScanSightError as error:
        parser.error(str(error))
    for chosen in model.values() if isinstance(model, dict) else [model]:
        if chosen.card.task == "segmentation":
            parser.error("batch prediction takes a classifier; segmentation models are used from the app")
    files = expand(args.paths)
    if not files:
        parser.error("no image files found")
    output = open_output(args.csv) if args.csv else sys.stdout
    try:
        rows = predict_files(files, model, args.batch_size, gate=gate)
        write_csv(named_for_output(rows, "all" if args.keep_names else "plain"), output)
    finally:
        if output is not sys.stdout:
            output.close()
    print(summary(rows), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
