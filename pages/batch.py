"""Batch: many files (or a zip) at once -> a sortable table and a CSV download. Nothing is stored."""

import io

import streamlit as st

from core.errors import ScanSightError
from core.io.archives import unzip_in_memory
from core.tasks import inference
from core.tasks.batch import AUTO_MODELS, columns_for, named_for_output, summary, write_csv
from core.tasks.registry import questions
from pages.shared.state import per_upload
from pages.shared.widgets import all_model_cards, ensure_frame, model_call, model_cards, show_error

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

CHUNK = 32
ZIP_ERRORS = "batch_zip_errors"  # the zips of the current files that could not be read
AUTO = "auto"
CHEST_QUESTIONS = questions("chest-xray")  # from the table of tasks

st.title("🗂️ Batch")
st.caption("Upload many images, or one zip of them. Files stay in memory; the table is yours to download.")

cards = {name: card for name, card in model_cards().items() if card.task != "segmentation"}
if not cards:
    st.error("No classifier is installed in `weights/`.")
    st.stop()
use_gate = "gate" in all_model_cards()
choices = ([AUTO] if use_gate else []) + list(cards)
name = st.selectbox(
    "Model",
    choices,
    format_func=lambda n: "Automatic: the model that fits each image (chosen by the gate)" if n == AUTO
    else cards[n].title,
    key="batch_model",
)  # fmt: skip
models: str | dict[str, str] = name
if name == AUTO:
    chest = st.radio("Question for chest X-rays", [n for n in CHEST_QUESTIONS if n in cards],
                     format_func=CHEST_QUESTIONS.get, horizontal=True, key="batch_chest")  # fmt: skip
    models = {kind: model for kind, model in {**AUTO_MODELS, "chest-xray": chest}.items() if model in cards}
    st.caption(
        "Chest X-rays get the question above, brain MRI slices the tumour classifier; CT slices (segmentation "
        "only: use the CT page) and images that are none of these get no answer."
    )
files = st.file_uploader("Images or a .zip", accept_multiple_files=True, key="batch_files")
if not files:
    st.info("Choose files above; each becomes one row of the table.", icon="🗂️")
    st.stop()


def read_uploads() -> tuple[list[tuple[str, bytes | ScanSightError]], list[ScanSightError]]:
    """The files as (name, bytes), zips unpacked in memory; the zips that could not be read, as errors."""
    uploads, errors = [], []
    for file in files:
        data = file.getvalue()
        if file.name.lower().endswith(".zip"):
            try:
                uploads += [(f"{file.name}/{member}", content) for member, content in unzip_in_memory(data)]
            except ScanSightError as error:
                errors.append(error)
        else:
            uploads.append((file.name, data))
    return uploads, errors


def predict_all() -> list:
    uploads, st.session_state[ZIP_ERRORS] = read_uploads()
    bar = st.progress(0.0, text="Predicting…")
    rows = []
    for start in range(0, len(uploads), CHUNK):  # chunks through the model process: a progress bar, bounded pipes
        rows += model_call(inference.batch_rows, models, uploads[start : start + CHUNK], use_gate)
        bar.progress(len(rows) / len(uploads), text=f"{len(rows)} / {len(uploads)} files")
    bar.empty()
    return rows


# Keyed by the uploader's file ids, and the files read inside: a rerun (a checkbox, a sort) neither hashes nor
# unpacks them again, and the session keeps the rows, not a second copy of the files.
chosen = [(file.name, file.file_id) for file in files]
rows = per_upload("batch_rows", predict_all, str(models), files=chosen)  # once per set of files and models
for error in st.session_state.get(ZIP_ERRORS, []):
    show_error(error)

st.markdown(f"**{summary(rows)}.**")
keep_names = st.checkbox(
    "Keep the original file names in the table and the CSV", value=False, key="batch_keep_names",
    help="Off: names that look like identifiers are shown as 'file N', and the CSV carries no file name at all.",
)  # fmt: skip
columns = columns_for(rows)
st.dataframe(
    [row.record() for row in named_for_output(rows, "all" if keep_names else "plain")],
    column_order=columns,
    column_config={
        "flags": st.column_config.TextColumn("flags", width="large"),
        "error": st.column_config.TextColumn("error", width="large"),
        **{c: st.column_config.NumberColumn(c, format="%.3f") for c in columns if c.startswith("p_")},
    },
    width="stretch",
    hide_index=True,
)
st.caption("`p_<class>`: the model's calibrated probability of that class; `label`: its answer at its threshold. "
           "Rows without a label were not answered: the gate found no model here for that kind of image.")  # fmt: skip
buffer = io.StringIO()
write_csv(named_for_output(rows, "all" if keep_names else "none"), buffer)
st.download_button("Download CSV", buffer.getvalue(), file_name="scansight_batch.csv", mime="text/csv", icon="⬇️")
st.caption("Not a diagnosis: a teaching and demonstration tool.")
