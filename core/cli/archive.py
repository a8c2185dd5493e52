"""Batch over a whole archive with Ray Data: ``python -m core.predict --engine ray FOLDER --out results/``.

The same rows as the local batch CLI (`core.cli.predict`: file, modality, gate verdict, model, ``p_<class>``, label,
flags, error), computed by the same function (`core.tasks.batch.predict_uploads`) inside a pool of Ray actors that
each load the gate and the models once (`map_batches` with a callable class). Ray runs locally by default
(``ray.init()`` on this machine, nothing to start) or on a cluster (``--address ray://head:10001``).

- Input: files, folders (recursive), globs and zips (members listed from the central directory, read inside
  the actor with the same limits as the local CLI). Only paths travel through Ray, never pixels.
- Output: ``part-<time>.parquet`` and ``part-<time>.csv`` in the output folder, written batch by batch as the
  results stream back, so memory stays bounded and Ctrl-C leaves readable files.
- Resumable: each row carries the sha256 of the file's bytes (never patient data); a rerun on the same output
  folder skips files whose content is already there.
- Privacy: identifier-like file names (a PatientID, UIDs, dates) are written as ``file <hash prefix>`` unless
  ``--keep-names``; DICOM patient fields are never read into a row; nothing read is written but the output.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import time
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.chest import IMAGE_SUFFIXES
from core.errors import ScanSightError
from core.models.cards import WEIGHTS_DIR

REPO = Path(__file__).resolve().parents[2]
HASH_COLUMN = "sha256"


@dataclass(frozen=True)
class ArchiveItem:
    """One image to read: a file, or a member of a zip (`member` set)."""

    path: str
    member: str = ""

    @property
    def name(self) -> str:
        return f"{self.path}/{self.member}" if self.member else self.path


def list_items(paths: Iterable[str | Path]) -> list[ArchiveItem]:
    """Files, folders (recursively), globs and zips (their members), in a stable order."""
    items: list[ArchiveItem] = []
    for given in paths:
        text = str(given)
        matches = sorted(glob.glob(text, recursive=True)) if any(c in text for c in "*?[") else [text]
        for match in matches:
            path = Path(match)
            if path.is_dir():
                files = sorted(
                    p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in {*IMAGE_SUFFIXES, ".zip"}
                )
            else:
                files = [path]
            for file in files:
                items += _zip_members(file) if file.suffix.lower() == ".zip" else [ArchiveItem(str(file))]
    return items


def _zip_members(path: Path) -> list[ArchiveItem]:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [
                m.filename for m in archive.infolist() if not m.is_dir() and not Path(m.filename).name.startswith(".")
            ]
    except (zipfile.BadZipFile, OSError, ValueError):
        return [ArchiveItem(str(path))]  # read (and refused) as a whole: becomes an error row
    return [ArchiveItem(str(path), name) for name in sorted(names)]


def read_item(item: ArchiveItem) -> bytes | ScanSightError:
    """The bytes of one item, with the local CLI's limits; a read problem comes back as a typed error."""
    from core.io.archives import MAX_ZIP_BYTES, ZipMemberError, read_member
    from core.io.loading import read_capped

    try:
        if not item.member:
            return read_capped(Path(item.path))
        with zipfile.ZipFile(item.path) as archive:
            info = archive.getinfo(item.member)
            if info.flag_bits & 0x1:
                return ZipMemberError("This file in the archive is encrypted; ScanSight cannot read it.")
            return read_member(archive, info, min(info.file_size, MAX_ZIP_BYTES))
    except ScanSightError as error:
        return error
    except (OSError, KeyError, zipfile.BadZipFile, ValueError) as error:
        return ZipMemberError(f"cannot read the file ({type(error).__name__})")


def output_columns(class_lists: Iterable[Sequence[str]]) -> list[str]:
    """Fixed columns for every batch: the local CLI's, with ``p_<class>`` for every class of every model."""
    from core.tasks.batch import LEADING_COLUMNS, TRAILING_COLUMNS

    probability = list(dict.fromkeys(f"p_{c}" for classes in class_lists for c in classes))
    return [*LEADING_COLUMNS, *probability, *TRAILING_COLUMNS, HASH_COLUMN]


def columns_for_cards(weights: Path, task: str, chest_task: str) -> list[str]:
    """`output_columns` from the cards alone (the driver loads no network)."""
    from core.models.cards import ModelCard
    from core.tasks.batch import AUTO_MODELS

    names = [*{**AUTO_MODELS, "chest-xray": chest_task}.values()] if task == "auto" else [task]
    return output_columns(ModelCard.load(Path(weights) / f"{name}.json").classes for name in names
                          if (Path(weights) / f"{name}.json").exists())  # fmt: skip


def lite_forward(models, threads: int | None = None, log=None) -> list[str]:
    """Switch `models` to their TensorFlow Lite forward pass; the names of those that stay on TensorFlow."""
    kept = [model.name for model in models if not model.use_lite(threads)]
    if kept and log is not None:
        log(f"TensorFlow Lite could not convert {', '.join(kept)}: TensorFlow runs them")
    return kept


def load_batch_models(weights: Path, task: str, chest_task: str, use_gate: bool):
    """(gate or None, one model or one per gate kind) as the local CLI loads them."""
    from core.models.scan_model import ScanModel
    from core.tasks.batch import AUTO_MODELS

    gate = ScanModel.load("gate", weights) if use_gate and (Path(weights) / "gate.json").exists() else None
    if task == "auto":
        if gate is None:
            raise ScanSightError("--task auto needs the gate model")
        wanted = {**AUTO_MODELS, "chest-xray": chest_task}
        return gate, {kind: ScanModel.load(name, weights) for kind, name in wanted.items()
                      if (Path(weights) / f"{name}.json").exists()}  # fmt: skip
    return gate, ScanModel.load(task, weights)


class ArchivePredictor:
    """A Ray Data actor: loads the gate and the models once, then turns batches of paths into result rows."""

    def __init__(self, weights: str, task: str, chest_task: str, use_gate: bool, keep_names: bool,
                 done: frozenset[str], threads: int, forward: str = "tflite") -> None:  # fmt: skip
        import core  # noqa: F401  (TensorFlow runtime settings first)

        os.environ.setdefault("SCANSIGHT_WORKERS", "0")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(max(1, threads))
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.gate, self.models = load_batch_models(Path(weights), task, chest_task, use_gate)
        chosen = self.models.values() if isinstance(self.models, dict) else [self.models]
        if forward == "tflite":
            lite_forward([*chosen, *([self.gate] if self.gate else [])], threads)
        self.columns = output_columns(model.classes for model in chosen)
        self.keep_names, self.done = keep_names, done

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list]:
        from core.tasks.batch import BatchRow, predict_uploads

        items = [ArchiveItem(str(p), str(m)) for p, m in zip(batch["path"], batch["member"], strict=True)]
        contents, digests, names = [], [], []
        for item in items:
            content = read_item(item)
            digest = hashlib.sha256(content).hexdigest() if isinstance(content, bytes) else ""
            if digest and digest in self.done:
                continue
            contents.append(content)
            digests.append(digest or hashlib.sha256(item.name.encode()).hexdigest())
            names.append(item.name)
        uploads = [(name, lambda c=c: c) for name, c in zip(names, contents, strict=True)]
        try:
            rows = predict_uploads(uploads, self.models, batch_size=max(1, len(uploads)), gate=self.gate)
        except Exception:  # one bad file must not sink the batch: redo it file by file
            rows = []
            for upload in uploads:
                try:
                    rows += predict_uploads([upload], self.models, gate=self.gate)
                except Exception as error:
                    rows.append(BatchRow(file=upload[0], error=f"internal error ({type(error).__name__})"))
        return self._columns(rows, digests)

    def _columns(self, rows, digests: list[str]) -> dict[str, list]:
        from core.io.privacy import looks_identifying
        from core.tasks.batch import safe_cell

        out: dict[str, list] = {column: [] for column in self.columns}
        for row, digest in zip(rows, digests, strict=True):
            record = row.record()
            parts = str(row.file).replace("\\", "/").split("/")
            if not self.keep_names and any(looks_identifying(part) for part in parts):
                record["file"] = f"file {digest[:12]}"
            for column in self.columns:
                if column == HASH_COLUMN:
                    out[column].append(digest)
                elif column.startswith("p_"):
                    value = record.get(column)
                    out[column].append(float("nan") if value is None or value == "" else float(value))
                else:
                    out[column].append(str(safe_cell(record.get(column, ""))))
        return out


class PartWriter:
    """Parquet + CSV in the output folder, appended batch by batch; closed files are always readable. The CSV is
    written like the local CLI's (empty cells where a row has no value)."""

    def __init__(self, folder: Path, columns: list[str]) -> None:
        import pyarrow as pa

        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
        self.parquet_path, self.csv_path = folder / f"part-{stamp}.parquet", folder / f"part-{stamp}.csv"
        self.columns = columns
        self.schema = pa.schema([(c, pa.float64() if c.startswith("p_") else pa.string()) for c in columns])
        self._parquet = None
        self._csv_file = None
        self._csv = None
        self.rows = 0

    def write(self, table) -> None:
        import csv

        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if table.num_rows == 0:
            return
        arrays = []
        for field in self.schema:
            column = table.column(field.name).cast(field.type)
            if pa.types.is_floating(field.type):
                column = pc.if_else(pc.is_nan(column), pa.scalar(None, field.type), column)
            arrays.append(column)
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.parquet_path, self.schema)
            self._csv_file = open(self.csv_path, "w", newline="", encoding="utf-8")  # noqa: SIM115  (open across batches)
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(self.columns)
        self._parquet.write_table(table)
        for row in table.to_pylist():
            self._csv.writerow(["" if row[c] is None else row[c] for c in self.columns])
        self._csv_file.flush()
        self.rows += table.num_rows

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._csv_file is not None:
            self._csv_file.close()


def done_hashes(folder: Path) -> frozenset[str]:
    """Content hashes already in earlier outputs of this folder (unreadable leftovers are ignored)."""
    import pyarrow.parquet as pq

    done: set[str] = set()
    for part in sorted(Path(folder).glob("part-*.parquet")):
        try:
            done.update(pq.read_table(part, columns=[HASH_COLUMN]).column(HASH_COLUMN).to_pylist())
        except Exception:
            continue
    done.discard("")
    return frozenset(done)


@dataclass
class ArchiveRun:
    """What one run did."""

    items: int
    skipped_done: int
    written: int
    errors: int
    seconds: float
    parquet: Path | None
    csv: Path | None
    workers: int


def run_archive(
    paths: Sequence[str | Path],
    out: Path,
    task: str = "auto",
    chest_task: str = "pneumonia",
    workers: int | None = None,
    address: str | None = None,
    batch_size: int = 64,
    keep_names: bool = False,
    use_gate: bool = True,
    weights: Path = WEIGHTS_DIR,
    log=print,
    forward: str = "tflite",
) -> ArchiveRun:
    """Predict every image under `paths` with Ray Data into `out` (see the module docstring)."""
    import pyarrow as pa
    import ray

    started = time.perf_counter()
    items = list_items(paths)
    done = done_hashes(out)
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if not ray.is_initialized():
        local = address is None
        ray.init(
            address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
            runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "SCANSIGHT_WORKERS": "0"}} if local else None,
        )  # fmt: skip
    cpus = int(ray.cluster_resources().get("CPU", os.cpu_count() or 1))
    workers = workers or cpus
    threads = max(1, cpus // workers)
    log(f"{len(items)} images, {len(done)} already done in {out}; {workers} worker(s) x {threads} thread(s)")
    if not items:
        return ArchiveRun(0, 0, 0, 0, 0.0, None, None, workers)
    dataset = ray.data.from_items(
        [{"path": item.path, "member": item.member} for item in items],
        override_num_blocks=max(1, min(len(items) // batch_size, 4 * workers * 8)),
    ).map_batches(
        ArchivePredictor, batch_size=batch_size, batch_format="numpy", concurrency=workers, num_cpus=threads,
        fn_constructor_kwargs={"weights": str(weights), "task": task, "chest_task": chest_task,
                               "use_gate": use_gate, "keep_names": keep_names, "done": done, "threads": threads,
                               "forward": forward},
    )  # fmt: skip
    writer, errors = PartWriter(Path(out), columns_for_cards(weights, task, chest_task)), 0
    try:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            table = batch if isinstance(batch, pa.Table) else pa.table(batch)
            errors += sum(1 for value in table.column("error").to_pylist() if value)
            writer.write(table)
    finally:
        writer.close()
    seconds = time.perf_counter() - started
    written = writer.rows
    log(f"wrote {written} rows ({errors} errors) in {seconds:.1f} s to {writer.parquet_path.name} and .csv")
    return ArchiveRun(
        items=len(items), skipped_done=len(items) - written, written=written, errors=errors, seconds=seconds,
        parquet=writer.parquet_path if written else None, csv=writer.csv_path if written else None, workers=workers,
    )  # fmt: skip


def add_ray_arguments(parser) -> None:
    """The batch CLI's options for Ray (`core.cli.predict` keeps the others)."""
    parser.add_argument("--engine", choices=["local", "ray"], default="local",
                        help="local: this process (CSV); ray: Ray Data actors, Parquet + CSV in --out (needs "
                        "requirements-scale.txt)")  # fmt: skip
    parser.add_argument(
        "--forward", choices=["tflite", "tensorflow"], default="tflite",
        help="what runs the networks: a TensorFlow Lite copy made at load time (default, about 3x faster on CPU) "
        "or TensorFlow itself",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="--engine ray: output folder (reruns resume there)")
    parser.add_argument("--address", default=None, help="--engine ray: a Ray cluster (default: local, started here)")
    parser.add_argument("--workers", type=int, default=None, help="--engine ray: actors (default: one per CPU)")


def main_from_predict(args, parser) -> int:
    """`python -m core.predict --engine ray ...`: the CLI's arguments, run through `run_archive`."""
    if args.out is None:
        parser.error("--engine ray writes Parquet and CSV into a folder: give --out FOLDER")
    try:
        import ray  # noqa: F401
    except ImportError:
        parser.error("--engine ray needs Ray: pip install -r requirements-scale.txt")
    try:
        result = run_archive(
            args.paths, args.out, task=args.task, chest_task=args.chest_task, workers=args.workers,
            address=args.address, batch_size=args.batch_size, keep_names=args.keep_names, use_gate=not args.no_gate,
            weights=args.weights, log=lambda message: print(message, file=sys.stderr), forward=args.forward,
        )  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted: the rows written so far are in --out; rerun the same command to go on", file=sys.stderr)
        return 130
    print(
        f"{result.items} files: {result.written} written ({result.errors} with an error), "
        f"{result.skipped_done} already in {args.out}; {result.seconds:.1f} s",
        file=sys.stderr,
    )
    return 0
