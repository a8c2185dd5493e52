"""CT: COVID-19 lung infection mask over an axial slice, its area, mask and PDF download.

The share of the lung is not shown: the lung outline behind it has not been validated (issue 12)."""

import streamlit as st

from core import inference
from core.explain import fit_for_display, to_rgb8
from core.report import ReportContent
from core.segmentation import mask_overlay, mask_png
from pages.shared.common import (
    frame_picker,
    gate_allows,
    model_call,
    model_cards,
    notice,
    page_setup,
    report_button,
    require_image,
    test_caption,
)

LUNG_SHARE_WITHHELD = (
    "The infected share of the lung is not shown: ScanSight's lung outline has not been validated against "
    "radiologists' masks yet (on the 48 test slices it missed much of the marked infection), so a percentage "
    "could be far off."
)

page_setup("CT lung infection")
st.title("🫁 CT lung infection")
st.caption("An axial chest CT slice (PNG, JPEG, TIFF or DICOM). The infected area is drawn over it.")

image = require_image()
if image is None:
    st.stop()
cards = model_cards()
if "ct-infection" not in cards:
    st.error("The CT infection model is not installed in `weights/`.")
    st.stop()
if image.modality and image.modality.upper() != "CT":
    notice(f"The DICOM header says modality **{image.modality}**, not CT: treat the mask with caution.", icon="🚫")

controls = st.columns(4)
with controls[0]:
    frame = frame_picker(image, key="ct_frame")
style = controls[1].radio("Mask style", ["fill", "contour"], horizontal=True, key="ct_style")
alpha = controls[2].slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="ct_alpha", disabled=style == "contour")
colour = controls[3].color_picker("Infection colour", "#FFB000", key="ct_colour")
if not gate_allows(image, "ct", frame):
    st.stop()

key = (st.session_state["upload"].key, frame)
memo = st.session_state.get("ct_result")
if memo is None or memo[0] != key:
    with st.spinner("Segmenting…"):
        result = model_call(inference.segment_frame, "ct-infection", image.frame(frame), image.pixel_spacing_mm)
        memo = (key, result)
    st.session_state["ct_result"] = memo
_, result = memo

picture = image.frame(frame)
drawn = mask_overlay(picture, result.mask, colour, alpha, style)
left, right = st.columns([3, 2])
left.image(drawn, caption="Predicted infection", width="stretch")
area = f"{result.area_pixels:,} pixels" + (f" = {result.area_mm2:,.1f} mm²" if result.area_mm2 else "")
with right:
    st.metric("Infected area on this slice", area)
    if result.area_mm2 is None:
        st.caption("Area in mm² needs the DICOM PixelSpacing; this file has none.")
    st.caption(LUNG_SHARE_WITHHELD)
    st.caption("One colour: this model marks ground-glass opacity and consolidation together.")
    st.download_button("Download mask (PNG)", mask_png(result.mask), file_name="ct_infection_mask.png",
                       mime="image/png", icon="⬇️")  # fmt: skip
    report_button(
        (key, colour, alpha, style),
        lambda: ReportContent(
            title="CT lung infection", card=cards["ct-infection"], image=fit_for_display(to_rgb8(picture)),
            overlay=drawn, overlay_caption="Predicted infection", findings=[("Infected area", area)],
            warnings=[LUNG_SHARE_WITHHELD],
        ),
        "scansight_ct_report.pdf",
    )  # fmt: skip
    test_caption(cards["ct-infection"])
    st.caption("Not a diagnosis: a teaching and demonstration tool.")
