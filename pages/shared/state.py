"""The session's state: the current upload, the session keys the shared code uses, and `per_upload`, the one way a
page computes something once per upload (a decoded image, a gate verdict, a prediction, a PDF). No model code; the one
thing it draws is the sidebar's "Current image" line, which mirrors the upload.
(Widget keys stay with their widgets.)"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import TypeVar

import streamlit as st

from core.errors import ScanSightError
from core.io.loading import LoadedImage, load_image
from core.io.privacy import shown_name
from core.models.worker import run_decoder

T = TypeVar("T")

# Session keys (st.session_state) of the shared code.
UPLOAD = "upload"  # the current Upload
UPLOAD_COUNT = "upload_count"  # uploads so far in this session: the neutral name "upload N"
UPLOADER_FILE_ID = "uploader_file_id"  # the uploader's file already taken (a rerun must not take it again)
UPLOADER_GENERATION = "uploader_generation"  # bumped to empty the uploader when the image is removed
UPLOAD_SLOTS = "_per_upload_slots"  # the per_upload slots of the current upload, dropped with it
SIDEBAR_IMAGE = "_sidebar_image_slot"  # the sidebar's "Current image" line, redrawn when the upload changes
NOTICES = "_page_notices"  # the warnings shown on the page in this run (for its PDF)
PAGE_RUNS = "_page_runs"  # runs so far: makes the phone menu script new on each run
FRAMED = "_page_framed"  # set by app.py's page_setup, taken by the page: it knows app.py drew the frame

# per_upload slots (each holds (key, value) for the latest key only).
LOADED = "loaded"  # the decoded upload, or the error decoding raised
GATE = "gate"  # the out-of-distribution gate's verdict
SOURCE = "source"  # P(adult X-ray), from the source detector
REPORT_PDF = "report_pdf"  # the page's PDF report


@dataclass
class Upload:
    """The user's file, kept in this browser session's memory only."""

    name: str
    data: bytes
    number: int = 1  # the session's n-th upload: its neutral name is "upload <number>"

    @cached_property
    def key(self) -> str:
        """The content hash (hashed once: every per_upload call asks for it)."""
        return hashlib.sha256(self.data).hexdigest()[:16]


def current_upload() -> Upload | None:
    return st.session_state.get(UPLOAD)


def upload_key() -> str:
    """The current upload's content hash ("" without one): model calls are tagged with it."""
    upload = current_upload()
    return upload.key if upload else ""


def files_key(files: Iterable[tuple[str, object]]) -> str:
    """A content hash of several named files (a batch, a study); an entry that is not bytes (a file that could not be
    read) counts by its text."""
    digest = hashlib.sha256()
    for name, content in files:
        digest.update(name.encode("utf-8", "replace") + b"\0")
        digest.update(hashlib.sha256(content).digest() if isinstance(content, bytes) else str(content).encode())
    return digest.hexdigest()[:16]


def per_upload(
    slot: str,
    compute: Callable[[], T],
    *parts: Hashable,
    files: Iterable[tuple[str, object]] | None = None,
    spinner: str | None = None,
) -> T:
    """`compute()` once per upload and `parts` (a frame, a model name, the report's options...), kept in the session
    under `slot` as (key, value): reruns (a slider moved, a page revisited) reuse it, and another upload or other parts
    compute it again (a slot keeps its latest value only). A slot of the current upload is dropped with it. `files`:
    key it by these files (a batch, a study) instead of the current upload; `spinner`: shown while it computes."""
    if files is None:
        st.session_state.setdefault(UPLOAD_SLOTS, set()).add(slot)
        key = (upload_key(), *parts)
    else:
        key = (files_key(files), *parts)
    memo = st.session_state.get(slot)
    if memo is None or memo[0] != key:
        if spinner:
            with st.spinner(spinner):
                memo = (key, compute())
        else:
            memo = (key, compute())
        st.session_state[slot] = memo
    return memo[1]


def kept(slot: str, *parts: Hashable):
    """What `per_upload(slot, ..., *parts)` keeps for the current upload, or None when it has not run yet."""
    memo = st.session_state.get(slot)
    return memo[1] if memo is not None and memo[0] == (upload_key(), *parts) else None


def forget_results() -> None:
    """Drop everything computed from the current upload."""
    for slot in st.session_state.pop(UPLOAD_SLOTS, set()):
        st.session_state.pop(slot, None)


def set_upload(name: str, data: bytes) -> None:
    number = st.session_state.get(UPLOAD_COUNT, 0) + 1
    st.session_state[UPLOAD_COUNT] = number
    forget_results()
    st.session_state[UPLOAD] = Upload(name=name, data=data, number=number)
    show_current_image()


def uploader_key() -> str:
    """The upload widget's key: a new one empties the widget after the image is removed."""
    return f"uploader_{st.session_state.get(UPLOADER_GENERATION, 0)}"


def take_from_uploader(file) -> None:
    """Take the uploader's file only when it is a new one: a sample loaded later, or a removal, must stick."""
    if file is not None and st.session_state.get(UPLOADER_FILE_ID) != file.file_id:
        st.session_state[UPLOADER_FILE_ID] = file.file_id
        set_upload(file.name, file.getvalue())


def clear_upload() -> None:
    """Forget the image and everything computed from it; empty the uploader too."""
    forget_results()
    for key in (UPLOAD, UPLOADER_FILE_ID):
        st.session_state.pop(key, None)
    st.session_state[UPLOADER_GENERATION] = st.session_state.get(UPLOADER_GENERATION, 0) + 1
    show_current_image()


def _decode(upload: Upload) -> LoadedImage | ScanSightError:
    try:  # decoded in the memory-capped decoding process: a decoder crash or a bomb ends this upload only
        return run_decoder(load_image, upload.data, upload.name, tag=upload.key)
    except ScanSightError as error:
        return error


def loaded_image() -> LoadedImage | ScanSightError | None:
    """The decoded current upload (once per upload), or the error it raised."""
    upload = current_upload()
    if upload is None:
        return None
    new = kept(LOADED) is None
    image = per_upload(LOADED, lambda: _decode(upload))
    if new:
        show_current_image()  # the patient fields are known now: the sidebar name may become neutral
    return image


def upload_label(upload: Upload | None = None) -> str:
    """The name the app shows for an upload: its file name, or "upload N" when the name looks like an identifier
    or holds one of the DICOM patient fields that are hidden (RSNA files are named by their PatientID)."""
    upload = upload or current_upload()
    if upload is None:
        return ""
    decoded = kept(LOADED) if upload.key == upload_key() else None
    hidden = decoded.patient.values() if isinstance(decoded, LoadedImage) else ()
    return shown_name(upload.name, upload.number, hidden)


def show_current_image() -> None:
    """(Re)draw the sidebar's "Current image" line; called again whenever the upload changes in this run, so the
    sidebar never lags one upload behind."""
    slot = st.session_state.get(SIDEBAR_IMAGE)
    if slot is None:
        return
    upload = current_upload()
    slot.caption(f"Current image: **{upload_label(upload)}**" if upload else "No image uploaded yet.")
