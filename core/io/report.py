"""One-case PDF report (fpdf2): image, overlay, probabilities, threshold, model card summary, notice."""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from core.models.cards import ModelCard

APP_VERSION = "0.3.0"
NOTICE = (
    "ScanSight is a teaching and demonstration tool, not a medical device. This report is not a diagnosis "
    "and must not be used for clinical decisions."
)


SUMMARY_KEYS = [
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("auc", "AUC"),
    ("macro_f1", "macro-F1"),
    ("dice_mean", "mean Dice"),
    ("dice_median", "median Dice"),
    ("iou_mean", "mean IoU"),
]


@dataclass
class ReportContent:
    """What goes into one report."""

    title: str
    card: ModelCard
    image: np.ndarray  # RGB uint8
    overlay: np.ndarray  # RGB uint8
    overlay_caption: str
    findings: list[tuple[str, str]] = field(default_factory=list)
    file_name: str = ""
    #: Every warning, override and flag the page showed: printed first, above the result.
    warnings: list[str] = field(default_factory=list)
    #: How a figure was measured and how far it can be trusted: printed under the findings.
    notes: list[str] = field(default_factory=list)


def _png(rgb: np.ndarray) -> io.BytesIO:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def _latin(text: str) -> str:
    """The core PDF fonts are Latin-1: replace what they cannot show."""
    replacements = {"—": "-", "–": "-", "→": "->", "²": "2", "≥": ">=", "≤": "<=", "±": "+/-", "’": "'"}
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text.encode("latin-1", "replace").decode("latin-1")


def build_pdf(content: ReportContent, when: dt.datetime | None = None) -> bytes:
    """The report as PDF bytes (made in memory, never written to disk)."""
    from fpdf import FPDF

    when = when or dt.datetime.now()
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 9, _latin(f"ScanSight report: {content.title}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    stamp = f"{when:%Y-%m-%d %H:%M} - ScanSight {APP_VERSION} - model {content.card.name}"
    pdf.cell(0, 5, _latin(stamp), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(160, 0, 0)
    pdf.multi_cell(0, 5, _latin(NOTICE), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    pdf.ln(2)
    if content.warnings:
        pdf.set_fill_color(255, 240, 220)
        pdf.set_font("Helvetica", "B", 11)
        pdf.cell(0, 7, _latin("Warnings shown on the page with this result"), new_x="LMARGIN", new_y="NEXT", fill=True)
        pdf.set_font("Helvetica", size=9)
        for warning in content.warnings:
            pdf.multi_cell(0, 4.5, _latin(f"- {warning}"), new_x="LMARGIN", new_y="NEXT", fill=True)
        pdf.ln(2)

    top = pdf.get_y()
    width = 88
    pdf.image(_png(content.image), x=10, y=top, w=width)
    pdf.image(_png(content.overlay), x=10 + width + 4, y=top, w=width)
    height = width * content.image.shape[0] / content.image.shape[1]
    pdf.set_y(top + max(height, width * content.overlay.shape[0] / content.overlay.shape[1]) + 1)
    pdf.set_font("Helvetica", "I", 8)
    pdf.cell(width + 4, 4, _latin("Image as uploaded" + (f" ({content.file_name})" if content.file_name else "")))
    pdf.cell(0, 4, _latin(content.overlay_caption), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)

    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, "Findings", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    for label, value in content.findings:
        pdf.cell(70, 6, _latin(label))
        pdf.cell(0, 6, _latin(value), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    for note in content.notes:
        pdf.multi_cell(0, 4.5, _latin(note.replace("`", "")), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)

    card = content.card
    pdf.set_font("Helvetica", "B", 12)
    pdf.cell(0, 7, "Model card summary", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    lines = [f"{card.title} ({card.name}). {card.description}", f"Network: {card.architecture}"]
    if card.threshold is not None:
        lines.append(f"Decision threshold {card.threshold:.3f}: {card.threshold_method}.")
    if card.mask_threshold is not None:
        lines.append(f"Mask threshold {card.mask_threshold:.2f}: {card.threshold_method}.")
    test = card.metrics.get("test", {})
    shown = [(key, label) for key, label in SUMMARY_KEYS if isinstance(test.get(key), int | float) and key in test]
    if shown:
        size = f"{test['n']} images" if "n" in test else f"{test.get('n_patients', '?')} patients"
        values = ", ".join(f"{label} {test[key]:.3f}" for key, label in shown)
        lines.append(f"Held-out test ({size}): {values}.")
    lines += [f"Limit: {limit}" for limit in card.limits]
    for line in lines:
        pdf.multi_cell(0, 4.5, _latin(line), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
