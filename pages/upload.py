"""Upload: read the file in memory, show it and its (non-identifying) header fields."""

import streamlit as st

from core.explain.overlay import fit_for_display, to_rgb8
from core.io.loading import MAX_FILE_BYTES
from pages.shared.state import (
    clear_upload,
    current_upload,
    loaded_image,
    set_upload,
    take_from_uploader,
    upload_label,
    uploader_key,
)
from pages.shared.widgets import PAGE_FOR_KIND, ensure_frame, frame_picker, gate_verdict, sample_images, show_error

ensure_frame()  # the menu and the sidebar, when Streamlit ran this page without app.py

st.title("📤 Upload")
st.caption(
    "PNG, JPEG, TIFF or DICOM (.dcm, or no extension). The file stays in this browser session's memory: "
    "it is never written to disk or logged. Reloading the browser tab starts a new session and forgets the "
    "image: move between pages with the menu instead."
)

uploaded = st.file_uploader(
    "Chest X-ray, brain MRI slice or CT slice",
    type=None,
    accept_multiple_files=False,
    key=uploader_key(),
    help=f"Up to {MAX_FILE_BYTES // 2**20} MB.",
)
take_from_uploader(uploaded)  # only a new file: a sample loaded later, or a removal, must stick

samples = sample_images()
if samples:
    with st.expander("…or try a sample image"):
        chosen = st.selectbox("Sample", list(range(len(samples))), format_func=lambda i: samples[i].label, key="sample")
        if st.button("Load this sample", key="load_sample"):
            set_upload(samples[chosen].path.name, samples[chosen].read())

upload = current_upload()
if upload is None:
    st.info("Choose a file above to begin.", icon="📤")
    st.stop()

image = loaded_image()
left, right = st.columns([3, 2])
with right:
    st.markdown(f"**File:** {upload_label(upload)} ({len(upload.data) / 1e6:.2f} MB)")
    if upload_label(upload) != upload.name:
        st.caption("The file's name looks like an identifier (or holds a hidden patient field), so it is not shown.")
    if st.button("Remove this image", icon="🗑️", key="remove_image"):
        clear_upload()
        st.rerun()
if not hasattr(image, "frames"):
    show_error(image)
    st.stop()

with left:
    frame = frame_picker(image, key="upload_frame")
    st.image(fit_for_display(to_rgb8(image.frame(frame)), 768), caption=f"{image.shape[1]} x {image.shape[0]} pixels")
with right:
    st.markdown(
        f"**Format:** {image.source_format.upper()}, {image.shape[1]} x {image.shape[0]} pixels"
        + (f", {image.n_frames} frames" if image.n_frames > 1 else "")
    )
    if image.technical:
        st.markdown("**Image header**")
        st.table({"field": list(image.technical), "value": list(image.technical.values())})
    if image.patient:
        st.caption(f"This DICOM file holds {len(image.patient)} patient-identifying fields; they are hidden.")
        if st.toggle("Show patient fields", value=False, key="show_patient"):
            st.table({"field": list(image.patient), "value": list(image.patient.values())})
    verdict = gate_verdict(image, frame)
    if verdict is not None:
        probability = verdict.probabilities[verdict.kind]
        st.markdown(
            f"**Looks like:** {verdict.label} (gate {probability:.0%})"
            if verdict.accepted
            else "**Looks like:** none of the images the models know (chest X-ray, brain MRI slice, CT slice)"
        )
    order = {"chest-xray": 0, "brain-mri": 1, "ct": 2}
    links = [(kind, *PAGE_FOR_KIND[kind]) for kind in order]
    if verdict is not None and verdict.accepted:  # the page that fits first
        order[verdict.kind] = -1
    for _, page, label, icon in sorted(links, key=lambda link: order[link[0]]):
        st.page_link(page, label=label, icon=icon)
