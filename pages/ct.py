"""CT: COVID-19 lung infection mask over an axial slice, its area and its share of the lungs, mask and PDF."""

import streamlit as st

from core.explain.overlay import fit_for_display, mask_overlay, mask_png, to_rgb8
from core.io.report import ReportContent
from core.tasks import inference
from pages.shared.state import per_upload
from pages.shared.widgets import (
    all_model_cards,
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

LUNG_SHARE_WITHHELD = (
    "The infected share of the lungs is not shown: the lung model (`ct-lungs`) and its validation are not "
    "installed, and a share over an unvalidated lung outline could be far off."
)


def lung_validation() -> str | None:
    """What the lung outline's validation measured, in one sentence (None when it has not been validated)."""
    card = all_model_cards().get("ct-lungs")
    test = card.metrics.get("test", {}) if card else {}
    if "infection_inside_lungs" not in test:
        return None
    margin = float(card.decision_rule.get("outline_margin", 0.0))
    rim = f", grown by a rim of {margin:.1%} of the slice's shorter side" if margin else ""
    return (
        f"Lungs: the lung network's outline joined with the infection mask{rim}. On the {test['n']} held-out test "
        f"slices, {test['infection_inside_lungs']:.1%} of the radiologists' infection fell inside the computed "
        f"lungs, and this share differed from the radiologists' own share (same lungs) by "
        f"{test['share_error_pp_mean']:.1f} percentage points on average (median {test['share_error_pp_median']:.1f})."
    )


st.title("🫁 CT lung infection")
st.caption("An axial chest CT slice (PNG, JPEG, TIFF or DICOM). The infected area is drawn over it.")

image = require_image()
if image is None:
    st.stop()
cards = model_cards()
if "ct-infection" not in cards:
    st.error("The CT infection model is not installed in `weights/`.")
    st.stop()

controls = st.columns(4)
with controls[0]:
    frame = frame_picker(image, key="ct_frame")
style = controls[1].radio("Mask style", ["fill", "contour"], horizontal=True, key="ct_style")
alpha = controls[2].slider("Mask opacity", 0.0, 1.0, 0.45, 0.05, key="ct_alpha", disabled=style == "contour")
colour = controls[3].color_picker("Infection colour", "#FFB000", key="ct_colour")
validation = lung_validation()
show_lungs = st.toggle("Outline the lungs used for the share", value=False, key="ct_lungs", disabled=not validation)
if not gate_allows(image, "ct", frame):
    st.stop()
result, lungs, share = per_upload(
    "ct_result",
    lambda: model_call(inference.ct_infection_and_lungs, image.frame(frame), image.pixel_spacing_mm),
    frame,
    spinner="Segmenting…",
)
if validation is None:
    share = None

picture = image.frame(frame)
drawn = mask_overlay(picture, result.mask, colour, alpha, style)
if show_lungs and lungs is not None and share is not None:
    drawn = mask_overlay(drawn.astype("float32") / 255, lungs, "#30A0FF", style="contour")
left, right = st.columns([3, 2])
left.image(drawn, caption="Predicted infection" + (" (lungs outlined in blue)" if show_lungs else ""), width="stretch")
area = f"{result.area_pixels:,} pixels" + (f" = {result.area_mm2:,.1f} mm²" if result.area_mm2 else "")
findings = [("Infected area", area)]
with right:
    st.metric("Infected area on this slice", area)
    if result.area_mm2 is None:
        st.caption("Area in mm² needs the DICOM PixelSpacing; this file has none.")
    if share is not None:
        st.metric("Infected share of the lungs", f"{share:.1%}")
        st.caption(validation)
        findings.append(("Infected share of the lungs", f"{share:.1%}"))
    elif validation is None:
        st.caption(LUNG_SHARE_WITHHELD)
    else:
        st.caption("No lung was found on this slice, so there is no share to give.")
    st.caption("One colour: this model marks ground-glass opacity and consolidation together.")
    st.download_button("Download mask (PNG)", mask_png(result.mask), file_name="ct_infection_mask.png",
                       mime="image/png", icon="⬇️")  # fmt: skip
    report_button(
        (frame, colour, alpha, style, show_lungs),
        lambda: ReportContent(
            title="CT lung infection", card=cards["ct-infection"], image=fit_for_display(to_rgb8(picture)),
            overlay=drawn, overlay_caption="Predicted infection", findings=findings,
            notes=[validation] if validation else [], warnings=[] if validation else [LUNG_SHARE_WITHHELD],
        ),
        "scansight_ct_report.pdf",
    )  # fmt: skip
    test_caption(cards["ct-infection"])
    st.caption("Not a diagnosis: a teaching and demonstration tool.")
