"""ScanSight: the Streamlit entry point (navigation, notice). Run with `streamlit run app.py`."""

import streamlit as st

from pages.common import DISCLAIMER, current_upload

st.set_page_config(page_title="ScanSight", page_icon="🩻", layout="wide")

navigation = st.navigation(
    {
        "ScanSight": [
            st.Page("pages/home.py", title="Home", icon="🏠", default=True),
            st.Page("pages/model_card.py", title="Model cards", icon="📋"),
        ],
        "Your scan": [
            st.Page("pages/upload.py", title="Upload", icon="📤"),
            st.Page("pages/preprocessing.py", title="Preprocessing preview", icon="🎛️"),
            st.Page("pages/prediction.py", title="Chest X-ray prediction", icon="🔎"),
            st.Page("pages/mri.py", title="Brain MRI", icon="🧠"),
            st.Page("pages/ct.py", title="CT lung infection", icon="🫁"),
        ],
        "Many scans": [st.Page("pages/batch.py", title="Batch", icon="🗂️")],
    }
)

with st.sidebar:
    upload = current_upload()
    st.caption(f"Current image: **{upload.name or 'unnamed'}**" if upload else "No image uploaded yet.")
    st.warning(DISCLAIMER, icon="⚕️")

navigation.run()
