"""Batch: many files (or a zip) at once -> a sortable table and a CSV download. Nothing is stored."""

import hashlib
import io
from dataclasses import asdict

import streamlit as st

from core import inference
from core.errors import ScanSightError
from core.predict import COLUMNS, unzip_in_memory, write_csv
from pages.shared.common import all_model_cards, model_call, model_cards, page_setup, show_error

CHUNK = 32

page_setup("Batch")
st.title("🗂️ Batch")
st.caption("Upload many images, or one zip of them. Files stay in memory; the table is yours to download.")

cards = {name: card for name, card in model_cards().items() if card.task != "segmentation"}
if not cards:
    st.error("No classifier is installed in `weights/`.")
    st.stop()
name = st.selectbox("Model", list(cards), format_func=lambda n: cards[n].title, key="batch_model")
files = st.file_uploader("Images or a .zip", accept_multiple_files=True, key="batch_files")
if not files:
    st.info("Choose files above; each becomes one row of the table.", icon="🗂️")
    st.stop()

uploads: list[tuple[str, bytes]] = []
for file in files:
    data = file.getvalue()
    if file.name.lower().endswith(".zip"):
        try:
            uploads += [(f"{file.name}/{member}", content) for member, content in unzip_in_memory(data)]
        except ScanSightError as error:
            show_error(error)
    else:
        uploads.append((file.name, data))

key = (name, hashlib.sha256(b"".join(hashlib.sha256(d).digest() for _, d in uploads)).hexdigest())
if st.session_state.get("batch_key") != key:
    bar = st.progress(0.0, text="Predicting…")
    rows, use_gate = [], "gate" in all_model_cards()
    for start in range(0, len(uploads), CHUNK):  # chunks through the model process: a progress bar, bounded pipes
        rows += model_call(inference.batch_rows, name, uploads[start : start + CHUNK], use_gate)
        bar.progress(len(rows) / len(uploads), text=f"{len(rows)} / {len(uploads)} files")
    bar.empty()
    st.session_state["batch_key"], st.session_state["batch_rows"] = key, rows
rows = st.session_state["batch_rows"]

failed = sum(1 for row in rows if row.error)
st.markdown(f"**{len(rows)} files**: {len(rows) - failed} predicted, {failed} could not be read.")
st.dataframe([asdict(row) for row in rows], column_order=COLUMNS, width="stretch", hide_index=True)
buffer = io.StringIO()
write_csv(rows, buffer)
st.download_button("Download CSV", buffer.getvalue(), file_name="scansight_batch.csv", mime="text/csv", icon="⬇️")
st.caption("Not a diagnosis: a teaching and demonstration tool.")
