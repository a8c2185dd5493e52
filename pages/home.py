"""Home: what ScanSight is, the notice, and the models on offer."""

import streamlit as st

from pages.common import DISCLAIMER, model_cards

st.title("🩻 ScanSight")
st.markdown(
    "Upload a **chest X-ray** (PNG, JPEG, TIFF or DICOM), see what each preprocessing step does to it, "
    "and get a prediction from a model trained in this project on public data, with a **Grad-CAM** heatmap "
    "showing which regions drove the answer."
)
st.warning(DISCLAIMER, icon="⚕️")

st.subheader("How to use it")
st.markdown(
    "1. **Upload**: choose a file; nothing is stored on disk, and it is gone when you close the tab.\n"
    "2. **Preprocessing preview**: compare the original with CLAHE, histogram equalisation, denoising, "
    "lung cropping and more.\n"
    "3. **Prediction**: probabilities, the decision threshold, and the heatmap over the image."
)

st.subheader("Models")
cards = model_cards()
if not cards:
    st.info("No trained model is installed in `weights/`.")
for card in cards.values():
    test = card.metrics.get("test", {})
    with st.container(border=True):
        st.markdown(f"**{card.title}** — `{card.name}`")
        st.caption(card.description)
        if test:
            columns = st.columns(4)
            for column, (label, key) in zip(
                columns,
                [
                    ("Accuracy", "accuracy"),
                    ("Sensitivity", "sensitivity"),
                    ("Specificity", "specificity"),
                    ("AUC", "auc"),
                ],
                strict=True,
            ):
                value = test.get(key)
                column.metric(label, "—" if value is None else f"{value:.1%}" if key != "auc" else f"{value:.3f}")
            st.caption(f"Measured on {test.get('n', '?')} held-out test images ({test.get('data', '')}).")
