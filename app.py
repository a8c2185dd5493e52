"""ScanSight: the Streamlit entry point. Run with `streamlit run app.py`.

`core` is imported first (its `core.runtime` sets TensorFlow's environment); then `st.navigation` over the pages
in pages/ draws the menu (on a phone it closes after a tap) and runs the page picked. pages/shared/ holds the UI
helpers the pages share."""

import streamlit as st

import core  # noqa: F401  (TensorFlow's runtime settings, before anything else)
from pages.shared.common import PAGES

st.set_page_config(page_title="ScanSight", page_icon="🩻", layout="wide")
navigation = st.navigation(
    [st.Page(script, title=label, icon=icon, default=index == 0) for index, (script, label, icon) in enumerate(PAGES)]
)
navigation.run()
