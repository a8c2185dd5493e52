"""ScanSight: the Streamlit entry point and Home page. Run with `streamlit run app.py`.

The other pages live in pages/ (Streamlit multipage app); pages/shared/ holds the UI helpers they share."""

import streamlit as st

from pages.shared.common import DISCLAIMER, model_cards, page_setup

page_setup("Home")

st.title("🩻 ScanSight")
st.markdown(
    "Upload a **chest X-ray** or a **brain MRI slice** (PNG, JPEG, TIFF or DICOM), see what each "
    "preprocessing step does to it, and get a prediction from a model trained in this project on public "
    "data, with a **Grad-CAM** heatmap showing which regions drove the answer; for MRI, the tumour mask "
    "drawn over the slice, with its area."
)
st.warning(DISCLAIMER, icon="⚕️")

st.subheader("How to use it")
st.markdown(
    "1. **Upload**: choose a file; nothing is stored on disk, and it is gone when you close the tab.\n"
    "2. **Preprocessing preview**: compare the original with CLAHE, histogram equalisation, denoising, "
    "lung cropping and more.\n"
    "3. **Chest X-ray prediction**: probabilities, the decision threshold, and the heatmap over the image.\n"
    "4. **Brain MRI**: the tumour mask over the slice, its area, and the tumour probability."
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
        if test and card.task == "segmentation":
            columns = st.columns(3)
            columns[0].metric("Dice, mean per patient", f"{test['dice_mean']:.3f}")
            columns[1].metric("Dice, median", f"{test['dice_median']:.3f}")
            columns[2].metric("IoU", f"{test['iou']:.3f}")
            st.caption(f"Measured on {test['n_patients']} held-out patients ({test['n_slices']} slices).")
        elif test:
            shown = [("Accuracy", "accuracy"), ("Sensitivity", "sensitivity"), ("Specificity", "specificity")]
            columns = st.columns(4)
            for column, (label, key) in zip(columns, shown, strict=False):
                column.metric(label, f"{test[key]:.1%}")
            columns[3].metric("AUC", f"{test['auc']:.3f}")
            where = f"{test['n_patients']} held-out patients, " if card.modality == "brain-mri" else ""
            st.caption(f"Measured on {where}{test['n']} held-out test images never used for training or tuning.")
        else:
            st.caption("No held-out test figures yet.")
st.page_link("pages/model_card.py", label="All model cards: data, split, confusion matrix, ROC, limits", icon="📋")
