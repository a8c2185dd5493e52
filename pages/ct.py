"""CT: COVID-19 lung infection mask over an axial slice, its share of the visible lung, mask download."""

import streamlit as st

from core import inference
from core.ct import infected_share, lung_mask
from core.segmentation import mask_overlay, mask_png
from pages.shared.common import (
    frame_picker,
    gate_allows,
    model_call,
    model_cards,
    page_setup,
    require_image,
    test_caption,
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
    st.warning(f"The DICOM header says modality **{image.modality}**, not CT: treat the mask with caution.", icon="🚫")

controls = st.columns(4)
with controls[0]:
    frame = frame_picker(image, key="ct_frame")
style = controls[1].radio("Mask style", ["fill", "contour"], horizontal=True, key="ct_style")
alpha = controls[2].slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="ct_alpha", disabled=style == "contour")
colour = controls[3].color_picker("Infection colour", "#FFB000", key="ct_colour")
show_lungs = st.toggle("Outline the lung area used for the percentage", value=False, key="ct_lungs")
if not gate_allows(image, "ct", frame):
    st.stop()

key = (st.session_state["upload"].key, frame)
memo = st.session_state.get("ct_result")
if memo is None or memo[0] != key:
    with st.spinner("Segmenting…"):
        grey = image.grey(frame)
        result = model_call(inference.segment_frame, "ct-infection", image.frame(frame), image.pixel_spacing_mm)
        memo = (key, result, infected_share(result.mask, grey), lung_mask(grey))
    st.session_state["ct_result"] = memo
_, result, share, lungs = memo

picture = image.frame(frame)
drawn = mask_overlay(picture, result.mask, colour, alpha, style)
if show_lungs:
    drawn = mask_overlay(drawn.astype("float32") / 255, lungs, "#30A0FF", style="contour")
left, right = st.columns([3, 2])
left.image(drawn, caption="Predicted infection (lung outline in blue when shown)", width="stretch")
with right:
    st.metric("Infected share of the visible lung", "—" if share is None else f"{share:.1%}")
    st.caption(
        f"{result.area_pixels:,} infected pixels" + (f" = {result.area_mm2:,.1f} mm²" if result.area_mm2 else "")
    )
    st.caption("The lung area comes from a simple threshold of dark regions inside the body; check the outline.")
    st.caption("One colour: this model marks ground-glass opacity and consolidation together.")
    st.download_button("Download mask (PNG)", mask_png(result.mask), file_name="ct_infection_mask.png",
                       mime="image/png", icon="⬇️")  # fmt: skip
    test_caption(cards["ct-infection"])
    st.caption("Not a diagnosis: a teaching and demonstration tool.")
