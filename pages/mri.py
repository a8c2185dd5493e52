"""Brain MRI: tumour mask over the slice, its area, the tumour probability with Grad-CAM, mask download;
or a whole study (several slices of one patient): masks, tumour volume and a slice strip."""

import streamlit as st

from core.explain.overlay import fit_for_display, mask_overlay, mask_png, overlay, to_rgb8
from core.io.report import ReportContent
from core.tasks import inference
from core.tasks.segmentation import describe_rule, tumour_decision
from pages.shared.mri_study_view import study_section
from pages.shared.state import per_upload
from pages.shared.widgets import (
    ensure_frame,
    frame_picker,
    gate_allows,
    model_call,
    model_cards,
    report_button,
    require_image,
    test_caption,
)

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("🧠 Brain MRI")
st.caption(
    "An axial brain MRI slice: the 3-channel stack of the LGG data set (pre-contrast, FLAIR, post-contrast) "
    "or a single grey FLAIR slice (PNG, JPEG, TIFF or DICOM) — or a whole study of one patient for the tumour volume."
)
cards = model_cards()
if "mri-segmentation" not in cards:
    st.error("The brain MRI segmentation model is not installed in `weights/`.")
    st.stop()
mode = st.segmented_control(
    "What to segment", ["One slice", "A whole study"], default="One slice", key="mri_mode", required=True
)
if mode == "A whole study":
    study_section(cards["mri-segmentation"])
    st.stop()

image = require_image()
if image is None:
    st.stop()

controls = st.columns(4)
with controls[0]:
    frame = frame_picker(image, key="mri_frame")
style = controls[1].radio("Mask style", ["fill", "contour"], horizontal=True, key="mri_style")
alpha = controls[2].slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="mri_alpha", disabled=style == "contour")
colour = controls[3].color_picker("Mask colour", "#FF3030", key="mri_colour")
if not gate_allows(image, "brain-mri", frame):
    st.stop()


def segment_and_classify():
    pixels = image.frame(frame)
    result = model_call(inference.segment_frame, "mri-segmentation", pixels, image.pixel_spacing_mm)
    tumour = model_call(inference.classify_and_explain, "mri-tumour", pixels) if "mri-tumour" in cards else None
    return result, tumour


result, tumour = per_upload("mri_result", segment_and_classify, frame, spinner="Segmenting…")

picture = image.frame(frame)
left, right = st.columns([3, 2])
with left:
    shown = mask_overlay(picture, result.mask, colour, alpha, style)
    st.image(shown, caption="Predicted tumour mask", width="stretch")
with right:
    if result.found:
        area = f"{result.area_pixels:,} pixels"
        if result.area_mm2 is not None:
            area += f" = {result.area_mm2:,.1f} mm²"
        st.metric("Tumour area on this slice", area)
        if result.area_mm2 is None:
            st.caption("Area in mm² needs the DICOM PixelSpacing; this file has none.")
    else:
        st.markdown("**No tumour region found** on this slice at the model's mask threshold.")
    if tumour is not None:
        prediction, cam = tumour
        p = prediction.positive_probability
        st.metric("P(tumour on this slice)", f"{p:.1%}")
        rule = cards["mri-tumour"].decision_rule
        if rule:
            found = tumour_decision(p, result.area_pixels, rule)
            st.markdown(
                f"Answer: **{'tumour' if found else 'no tumour'}** on this slice — tumour when {describe_rule(rule)} "
                "(the rule chosen on validation patients)."
            )
        else:
            answer = prediction.label.replace("_", " ").lower()
            threshold = f" (threshold {prediction.threshold:.2f})" if prediction.threshold is not None else ""
            st.markdown(f"Classifier answer: **{answer}**{threshold}.")
        with st.expander("Grad-CAM of the tumour classifier"):
            st.image(overlay(picture, cam, alpha=0.4), caption="Grad-CAM for 'TUMOUR'", width="stretch")
    st.download_button(
        "Download mask (PNG)", mask_png(result.mask), file_name="tumour_mask.png", mime="image/png", icon="⬇️"
    )
    findings = [("Tumour area", f"{result.area_pixels:,} pixels")]
    if result.area_mm2 is not None:
        findings[0] = ("Tumour area", f"{result.area_pixels:,} pixels = {result.area_mm2:,.1f} mm²")
    if tumour is not None:
        findings.append(("P(tumour on this slice)", f"{tumour[0].positive_probability:.1%}"))
    report_button(
        (frame, colour, alpha, style),
        lambda: ReportContent(
            title="Brain MRI tumour segmentation", card=cards["mri-segmentation"],
            image=fit_for_display(to_rgb8(picture)), overlay=shown, overlay_caption="Predicted tumour mask",
            findings=findings,
        ),
        "scansight_mri_report.pdf",
    )  # fmt: skip
    test_caption(cards["mri-segmentation"])
    st.caption("Not a diagnosis: a teaching and demonstration tool.")
