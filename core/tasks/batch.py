"""Batch rows: one per file, with the gate's verdict, the model that answered, ``p_<class>`` per class, the label,
flags and the error; spreadsheet-safe cells and the CSV writer. Shared by the Batch page, the batch CLI
(`core.cli.predict`) and the Ray path (`core.cli.archive`)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.errors import ScanSightError
from core.io.loading import LoadedImage, load_image
from core.models.scan_model import ScanModel
from core.tasks.segmentation import rule_decisions

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

    from core.io.privacy import looks_identifying

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


def header_flags(image: LoadedImage, model: ScanModel) -> list[str]:
    """Flags from the image itself: the DICOM header's refusal (the gate's header check) and extra frames."""
    from core.tasks.screening import header_refusal

    flags = []
    if why := header_refusal(image, model.card.modality if model.card.modality != "any" else None):
        flags.append(f"DICOM header: {why}")
    if image.n_frames > 1:
        flags.append(f"{image.n_frames} frames: first frame used")
    return flags


def gate_text(verdict) -> str:
    """The gate's verdict in a few words for a flag."""
    from core.tasks.gate import GATE_LABELS

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
    from core.tasks.gate import GATE_LABELS, check_image

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
