"""Home: what ScanSight is, how to use it, the models in use and their held-out test figures."""

import streamlit as st

from pages.shared.widgets import DISCLAIMER, ensure_frame, model_cards, test_figures

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("🩻 ScanSight")
st.markdown(
    "Upload a **chest X-ray**, a **brain MRI slice** or a **CT slice** (PNG, JPEG, TIFF or DICOM), see what each "
    "preprocessing step does to it, and get a prediction from a model trained in this project on public "
    "data, with a **Grad-CAM** heatmap showing which regions drove the answer; for MRI and CT, the "
    "tumour or infection mask drawn over the slice, with its area."
)
st.warning(DISCLAIMER, icon="⚕️")
st.page_link("pages/upload.py", label="Start: upload an image (or try a sample)", icon="📤")

st.subheader("How to use it")
st.markdown(
    "1. **Upload**: choose a file; nothing is stored on disk, and it is gone when you close the tab.\n"
    "2. **Preprocessing preview**: compare the original with CLAHE, histogram equalisation, denoising, "
    "lung cropping and more.\n"
    "3. **Chest X-ray prediction**: choose the question (pneumonia or not; normal, bacterial or viral; "
    "COVID-19 or not) and get probabilities, the decision threshold, and the heatmap over the image.\n"
    "4. **Brain MRI**: the tumour mask over the slice, its area, and the tumour probability; or a whole study "
    "of one patient (a zip or several slices): the tumour volume and a slice strip.\n"
    "5. **CT lung infection**: the infected area on a CT slice and its share of the lungs, with its validation.\n"
    "6. **Batch**: many files or a zip at once, as a table you can download.\n"
    "7. **Preprocessing study**: which preprocessing and model family win under 5-fold cross-validation."
)
st.info(
    "Before any prediction, a small **gate** model checks that the image is the kind the model knows "
    "(chest X-ray, brain MRI slice or CT slice). For the chest questions, the app also checks whether the "
    "image looks like the children's or the adults' X-rays: each chest model has seen only one of them, "
    "and what it says about the other is measured and shown (the *shortcut check*).",
    icon="🛂",
)

st.subheader("Models")
cards = model_cards()
if not cards:
    st.info("No trained model is installed in `weights/`.")
for card in cards.values():
    with st.container(border=True):
        st.markdown(f"**{card.title}** — `{card.name}`")
        st.caption(card.description)
        figures = test_figures(card)
        if figures:
            columns = st.columns(min(len(figures), 6))
            for column, (label, value) in zip(columns, figures[:6], strict=False):
                column.metric(label, value)
            st.caption("Held-out test data, never used for training, tuning or thresholds (see Model cards).")
        else:
            st.caption("No held-out test figures yet.")
st.page_link("pages/model_card.py", label="All model cards: data, split, confusion matrix, ROC, limits", icon="📋")
