"""ScanSight: the Streamlit entry point. Run with `streamlit run app.py`.

`st.navigation` over the pages in pages/ (`app_pages`: Home first, then Upload, the result pages, Batch, the study
and the model cards) draws the menu and gives each page its own URL (/upload, /prediction, /mri...); `page_setup`
draws what every page shares (the sidebar's current image and the notice); then the page picked runs.
pages/shared/ holds what the pages share: the session's state (state.py) and the UI pieces (widgets.py).
`core` is imported first: its `core.runtime` sets TensorFlow's environment."""

import streamlit as st

import core  # noqa: F401  (TensorFlow's runtime settings, before anything else)
from pages.shared.widgets import app_pages, page_setup

page = st.navigation(app_pages())
page_setup(page.title)
page.run()
