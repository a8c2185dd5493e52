"""Prediction: probabilities, the threshold, and the Grad-CAM heatmap over the image."""

import plotly.graph_objects as go
import streamlit as st

from core.explain.gradcam import CAM_METHODS
from core.explain.overlay import fit_for_display, overlay, to_rgb8
from core.io.report import ReportContent
from core.tasks import inference
from core.tasks.registry import questions
from pages.shared.state import per_upload
from pages.shared.widgets import (
    ensure_frame,
    frame_picker,
    gate_allows,
    model_call,
    model_cards,
    notice,
    report_button,
    require_image,
    source_warning,
    test_caption,
)

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("🔎 Chest X-ray prediction")

image = require_image()
if image is None:
    st.stop()
cards = {name: card for name, card in model_cards().items() if card.modality == "chest-xray"}
if not cards:
    st.error("No trained model is installed in `weights/`.")
    st.stop()

QUESTIONS = questions("chest-xray")  # from the table of tasks
names = [n for n in QUESTIONS if n in cards] + [n for n in cards if n not in QUESTIONS]
name = st.radio("Question", names, format_func=lambda n: QUESTIONS.get(n, cards[n].title), horizontal=True,
                key="pred_model")  # fmt: skip
card = cards[name]

controls = st.columns(3)
method = controls[0].radio(
    "Heatmap method", list(CAM_METHODS), format_func=CAM_METHODS.get, horizontal=True, key="pred_cam"
)
alpha = controls[1].slider("Heatmap opacity", 0.0, 1.0, 0.4, 0.05, key="pred_alpha")
with controls[2]:
    frame = frame_picker(image, key="pred_frame")
if not gate_allows(image, "chest-xray", frame):
    st.stop()
source_warning(image, card, frame)

prediction, cam = per_upload(
    "chest_result",
    lambda: model_call(inference.classify_and_explain, name, image.frame(frame), method),
    name,
    method,
    frame,
    spinner="Predicting…",
)

left, right = st.columns([3, 2])
with left:
    picture = image.frame(frame)
    shown = overlay(picture, cam, alpha=alpha)
    st.image(
        shown,
        caption=f"{CAM_METHODS[method]} for '{card.positive_class or prediction.label}'",
        width="stretch",
    )
    with st.expander("Original image"):
        st.image(fit_for_display(to_rgb8(picture)), width="stretch")
with right:
    st.metric("Model answer", prediction.label)
    if prediction.positive_class and prediction.threshold is not None:
        p, positive = prediction.positive_probability, prediction.positive_class
        verdict = "at or above" if p >= prediction.threshold else "below"
        st.markdown(
            f"The model answers **{positive}** only when P({positive}) reaches its operating point "
            f"**{prediction.threshold:.0%}** ({card.threshold_method}). Here P({positive}) = {p:.1%}, {verdict} "
            f"that point, so the answer is **{prediction.label}**."
        )
    caveat = card.answer_caveat(prediction.label)
    if caveat:
        notice(caveat)  # on the page and in its PDF
    figure = go.Figure(
        go.Bar(
            x=[prediction.probabilities[c] for c in prediction.classes],
            y=prediction.classes,
            orientation="h",
            text=[f"{prediction.probabilities[c]:.1%}" for c in prediction.classes],
            textposition="auto",
        )
    )
    if prediction.threshold is not None:
        figure.add_vline(
            x=prediction.threshold, line_dash="dash", annotation_text=f"operating point {prediction.threshold:.0%}",
            annotation_position="top left",
        )  # fmt: skip
    figure.update_layout(
        xaxis={"range": [0, 1], "title": "probability"}, height=240, margin={"l": 10, "r": 10, "t": 34, "b": 10}
    )
    st.plotly_chart(figure, width="stretch")
    test_caption(card)
    st.caption("Preprocessing: " + " → ".join(step["name"] for step in card.preprocessing))
    findings = [(f"P({c})", f"{prediction.probabilities[c]:.1%}") for c in prediction.classes]
    findings.append(("Model answer", prediction.label))
    if prediction.threshold is not None:
        findings.append(("Decision threshold", f"{prediction.threshold:.3f}"))
    report_button(
        (name, method, frame, alpha),
        lambda: ReportContent(
            title=card.title, card=card, image=fit_for_display(to_rgb8(picture)), overlay=shown,
            overlay_caption=f"{CAM_METHODS[method]} heatmap", findings=findings,
        ),
        "scansight_report.pdf",
    )  # fmt: skip
    st.caption("A heatmap shows where the network looked, not where disease is. Not a diagnosis.")
