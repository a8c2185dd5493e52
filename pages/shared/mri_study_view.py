"""The Brain MRI page's study mode: several slices of one patient -> masks, volume, a slice strip. UI only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.errors import ScanSightError
from core.explain.overlay import fit_for_display, mask_overlay, to_rgb8
from core.io.samples import demo_studies
from core.models.worker import run_decoder, run_model
from core.tasks import inference
from core.tasks.mri_study import MAX_STUDY_SLICES, MriStudy, measure_study, read_study
from pages.shared.state import files_key, per_upload
from pages.shared.widgets import run_guarded, show_error, test_caption

STUDY_TYPES = ["zip", "png", "jpg", "jpeg", "tif", "tiff", "dcm", "dicom"]


def _study_files() -> list[tuple[str, bytes]] | None:
    uploaded = st.file_uploader(
        f"Slices of **one** patient: a zip, or several files (PNG, JPEG, TIFF, DICOM; up to {MAX_STUDY_SLICES} "
        "slices). Files named `*_mask.*` (the LGG layout) are read as the radiologist's masks.",
        type=STUDY_TYPES, accept_multiple_files=True, key="mri_study_files",
    )  # fmt: skip
    if uploaded:
        st.session_state.pop("mri_study_sample", None)
        return [(item.name, item.getvalue()) for item in uploaded]
    studies = demo_studies()
    if studies:
        labels = {sample.label: sample for sample in studies}
        chosen = st.selectbox("…or a sample study", ["(none)", *labels], key="mri_study_sample")
        if chosen in labels:
            return [(labels[chosen].path.name, _sample_bytes(str(labels[chosen].path)))]
    return None


@st.cache_data(max_entries=4, show_spinner=False)
def _sample_bytes(path: str) -> bytes:
    """A committed sample study, read once (every slider move reruns the page)."""
    return Path(path).read_bytes()


def _segment(files: list[tuple[str, bytes]]) -> tuple[MriStudy, np.ndarray] | None:
    """Read and segment once per set of files (kept for the session)."""
    tag = f"study:{files_key(files)}"

    def read_and_segment() -> tuple[MriStudy, np.ndarray] | ScanSightError:
        try:
            with st.spinner("Reading the slices…"):
                study = run_decoder(read_study, files, tag=tag)
        except ScanSightError as error:
            return error
        with st.spinner(f"Segmenting {len(study.slices)} slices…"):
            masks = run_guarded(run_model, inference.segment_study, [item.pixels for item in study.slices], tag=tag)
        return study, masks

    outcome = per_upload("mri_study", read_and_segment, files=files)
    if isinstance(outcome, ScanSightError):
        show_error(outcome)
        return None
    return outcome


def _area_chart(areas: list[float], unit: str, current: int) -> go.Figure:
    colours = ["#d62728" if i == current else "#1f77b4" for i in range(len(areas))]
    figure = go.Figure(go.Bar(x=list(range(1, len(areas) + 1)), y=areas, marker_color=colours))
    figure.update_layout(
        height=220, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=f"Tumour area per slice ({unit})",
        xaxis_title="slice", yaxis_title=unit, yaxis_rangemode="tozero",
    )  # fmt: skip
    return figure


def study_section(card) -> None:
    files = _study_files()
    if not files:
        st.info("Upload the slices of one patient (or pick the sample study) to get the tumour volume.")
        return
    outcome = _segment(files)
    if outcome is None:
        return
    study, masks = outcome
    if study.skipped:
        st.warning(
            f"{len(study.skipped)} file(s) skipped; the readable slices are used:\n"
            + "\n".join(f"- `{name}`: {why}" for name, why in study.skipped[:10])
        )
    if study.mixed_patients:
        st.error("These slices come from **more than one patient**: each slice is segmented, but no volume is given.")
    first = study.slices[0]
    pixel_mm = slice_mm = None
    if not (first.pixel_spacing_mm and first.slice_spacing_mm):
        with st.expander("Voxel size (the files do not give all of it)", expanded=False):
            columns = st.columns(2)
            if not first.pixel_spacing_mm:
                pixel_mm = columns[0].number_input("Pixel size (mm)", 0.1, 5.0, value=None, step=0.1,
                                                   key="mri_px_mm", placeholder="assumed 1.0")  # fmt: skip
            if not first.slice_spacing_mm:
                slice_mm = columns[1].number_input("Slice spacing (mm)", 0.1, 20.0, value=None, step=0.5,
                                                   key="mri_slice_mm", placeholder="assumed 3.0")  # fmt: skip
    result = measure_study(study, masks, pixel_mm, slice_mm)

    columns = st.columns(4)
    columns[0].metric("Slices read", len(study.slices))
    columns[1].metric("Slices with tumour", sum(1 for a in result.areas_pixels if a > 0))
    columns[2].metric("Tumour volume", "—" if result.volume_ml is None else f"{result.volume_ml:.1f} mL")
    if result.dice_vs_truth is not None:
        columns[3].metric("Dice vs the radiologist's masks", f"{result.dice_vs_truth:.3f}")
    st.caption(result.volume_note)
    if result.truth_volume_ml is not None and result.volume_ml is not None:
        st.caption(f"Volume of the radiologist's masks at the same voxel size: {result.truth_volume_ml:.1f} mL.")

    default = result.largest_slice if result.largest_slice is not None else 0
    index = st.slider("Slice", 1, len(study.slices), default + 1, key="mri_study_slice") - 1
    voxel_mm2 = result.pixel_mm[0] * result.pixel_mm[1]
    st.plotly_chart(_area_chart([a * voxel_mm2 for a in result.areas_pixels], "mm²", index), width="stretch")
    item = study.slices[index]
    shown = mask_overlay(item.pixels, masks[index], "#FF3030", 0.45, "fill")
    left, right = st.columns(2)
    label = " (largest tumour area)" if index == result.largest_slice else ""
    left.image(shown, caption=f"Slice {index + 1} of {len(study.slices)}{label}: predicted mask", width="stretch")
    if item.truth is not None:
        right.image(mask_overlay(item.pixels, item.truth, "#30C030", 0.45, "fill"),
                    caption="The radiologist's mask (from the study's *_mask files)", width="stretch")  # fmt: skip
    else:
        right.image(fit_for_display(to_rgb8(item.pixels)), caption="The slice", width="stretch")
    test_caption(card)
    st.caption(
        "Post-processing: "
        + ("test-time horizontal flip; " if card.test_time_flip else "")
        + f"3-D components under {card.min_component_voxels} voxels dropped (chosen on validation patients). "
        "Not a diagnosis: a teaching and demonstration tool."
    )
