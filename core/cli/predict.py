"""Batch prediction CLI: ``python -m core.predict FILES_OR_DIRS_OR_ZIPS... --task auto --csv out.csv``.

Every file becomes a row: file, modality found, the gate's verdict, the model used, ``p_<class>`` for each of
its classes, the label, flags and the error. With ``--task auto`` (the default) the gate decides which model
answers each image (chest X-rays: ``--chest-task``, default pneumonia; brain MRI: mri-tumour); with a named
task, images the gate says are another kind get no label and no probabilities, only a flag. A file that
cannot be read becomes a row with its error, and the other files go on. Nothing is written but the CSV.
With ``--engine ray --out FOLDER`` the same rows come from Ray Data actors (`core.cli.archive`), as Parquet and CSV.
The rows and the CSV are `core.tasks.batch`'s, the zip reader `core.io.archives`'s.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from core.data.chest import IMAGE_SUFFIXES
from core.errors import ScanSightError
from core.io.archives import unzip_in_memory
from core.io.loading import read_capped
from core.models.cards import WEIGHTS_DIR
from core.models.scan_model import ScanModel
from core.tasks.batch import AUTO_MODELS, BatchRow, named_for_output, predict_uploads, safe_cell, summary, write_csv


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


def check_output_place(path: Path) -> None:
    """Before any model is loaded: a missing or read-only folder for the CSV fails at once."""
    if not path.parent.is_dir():
        raise SystemExit(f"error: the folder for --csv does not exist: {safe_cell(str(path.parent))}")
    if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise SystemExit("error: cannot write --csv there (Permission denied)")


def open_output(path: Path):
    """Open the CSV for writing (its place was checked by `check_output_place` before any work)."""
    check_output_place(path)
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
    from core.cli.archive import add_ray_arguments, main_from_predict

    add_ray_arguments(parser)
    args = parser.parse_args(argv)
    if args.engine == "ray":
        return main_from_predict(args, parser)
    if args.csv:
        check_output_place(args.csv)
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
    if args.forward == "tflite":
        from core.cli.archive import lite_forward

        chosen = model.values() if isinstance(model, dict) else [model]
        lite_forward([*chosen, *([gate] if gate else [])], log=lambda message: print(message, file=sys.stderr))
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
