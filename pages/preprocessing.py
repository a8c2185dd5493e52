"""Preprocessing preview: the original beside each step the user picks."""

import streamlit as st

from core.explain.overlay import fit_for_display, to_rgb8
from core.transforms.preprocessing import STEPS, Compose, LungCrop, build_step
from pages.shared.widgets import ensure_frame, frame_picker, notice, require_image

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("🎛️ Preprocessing preview")
st.caption("See what each step does. The model's own preprocessing is listed on the Prediction page.")

image = require_image()
if image is None:
    st.stop()

choices = [name for name in STEPS if name not in ("grey", "resize")]
picked = st.multiselect(
    "Steps",
    choices,
    default=["clahe", "histeq", "median", "lung_crop"],
    format_func=lambda name: STEPS[name].label,
    key="pre_steps",
)
mode = st.radio("Apply", ["each step on its own", "as a chain, in the order picked"], horizontal=True, key="pre_mode")
with st.expander("Step settings"):
    clip = st.slider("CLAHE clip limit", 0.5, 8.0, 2.0, 0.5, key="pre_clip")
    sigma = st.slider("Gaussian sigma (pixels)", 0.5, 5.0, 1.0, 0.5, key="pre_sigma")
    amount = st.slider("Unsharp amount", 0.2, 3.0, 1.0, 0.2, key="pre_amount")
params = {"clahe": {"clip_limit": clip}, "gaussian": {"sigma": sigma}, "unsharp": {"amount": amount}}
frame = frame_picker(image, key="pre_frame")

grey = fit_for_display(image.grey(frame), 1024)
steps = [build_step({"name": name, **params.get(name, {})}) for name in picked]
if mode.startswith("each"):
    panels = [("Original", grey)] + [(step.label, step(grey)) for step in steps]
    inputs = [grey] * len(steps)
else:
    panels = Compose(steps).intermediates(grey)
    inputs = [picture for _, picture in panels[:-1]]
for step, before in zip(steps, inputs, strict=True):
    if isinstance(step, LungCrop):
        box, reason = step.find(before)
        if box is None:
            notice(f"Lung crop did not crop: it {reason}. The image is shown uncropped.", icon="🫁")

per_row = 3
for start in range(0, len(panels), per_row):
    columns = st.columns(per_row)
    for column, (label, picture) in zip(columns, panels[start : start + per_row], strict=False):
        column.image(to_rgb8(picture), caption=label, width="stretch")
        description = next((cls.description for cls in STEPS.values() if cls.label == label), "")
        if description:
            column.caption(description)
