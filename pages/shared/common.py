"""Shared UI pieces for the pages: cached loaders, the current upload, error display. UI only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import streamlit as st

from core.errors import ScanSightError
from core.explain.overlay import fit_for_display, to_rgb8
from core.io.loading import LoadedImage, load_image
from core.io.privacy import shown_name
from core.io.samples import SampleImage, list_samples
from core.models.cards import ModelCard
from core.models.scan_model import available_models
from core.models.worker import run_decoder, run_model
from core.tasks import inference
from core.tasks.gate import GateVerdict, screen

DISCLAIMER = (
    "ScanSight is a teaching and demonstration tool. It is **not a medical device** and does "
    "**not** give a diagnosis: never use its output to make clinical decisions."
)


#: The page that fits each kind of image the gate recognises: (script, label, icon).
PAGE_FOR_KIND = {
    "chest-xray": ("pages/prediction.py", "Chest X-ray prediction", "🔎"),
    "brain-mri": ("pages/mri.py", "Brain MRI", "🧠"),
    "ct": ("pages/ct.py", "CT lung infection", "🫁"),
}

#: The app's pages in menu order: (script, label, icon). The sidebar is drawn from this list.
PAGES = [
    ("app.py", "Home", "🏠"),
    ("pages/upload.py", "Upload", "📤"),
    ("pages/preprocessing.py", "Preprocessing preview", "🎛️"),
    ("pages/prediction.py", "Chest X-ray prediction", "🔎"),
    ("pages/mri.py", "Brain MRI", "🧠"),
    ("pages/ct.py", "CT lung infection", "🫁"),
    ("pages/batch.py", "Batch", "🗂️"),
    ("pages/study.py", "Preprocessing study", "🧪"),
    ("pages/model_card.py", "Model cards", "📋"),
]


def page_setup(title: str) -> None:
    """Every page starts here: page config, the sidebar menu, the current image and the notice."""
    st.set_page_config(page_title=f"{title} · ScanSight", page_icon="🩻", layout="wide")
    st.session_state[NOTICES] = []
    runs = st.session_state["_page_runs"] = st.session_state.get("_page_runs", 0) + 1
    st.html(f"<!-- run {runs} -->" + CLOSE_MENU_ON_PHONES, unsafe_allow_javascript=True)  # new each run: runs again
    with st.sidebar:
        st.markdown("### 🩻 ScanSight")
        for script, label, icon in PAGES:
            st.page_link(script, label=label, icon=icon)
        st.divider()
        st.session_state[SIDEBAR_IMAGE] = st.empty()
        show_current_image()
        st.warning(DISCLAIMER, icon="⚕️")


#: On a narrow screen, close the menu once a page has been picked from it (Streamlit leaves it open over the page).
#: A fixed script, no user input in it.
CLOSE_MENU_ON_PHONES = """<script>
(() => {
  if (!window.scansightMenuWatch) {  // once per browser tab: remember when a menu link was tapped
    window.scansightMenuWatch = true;
    window.document.addEventListener("click", (event) => {
      if (event.target.closest('[data-testid="stSidebar"] a')) window.scansightMenuTapAt = Date.now();
      if (event.target.closest('[data-testid="stExpandSidebarButton"]')) window.scansightMenuTapAt = 0;  // wanted
    }, true);
  }
  const closeMenu = () => {
    const since = Date.now() - (window.scansightMenuTapAt || 0);
    if (window.innerWidth > 640 || since > 10000) return;  // only on a phone, only just after a menu tap
    const sidebar = window.document.querySelector('[data-testid="stSidebar"]');
    const box = sidebar ? sidebar.getBoundingClientRect() : null;
    if (box && box.width > 0 && box.x >= 0) {
      const close = sidebar.querySelector('[data-testid="stSidebarCollapseButton"] button');
      if (close) close.click();
    }
  };
  // Streamlit may reopen the menu while the new page draws: keep it closed for a few seconds after the tap.
  for (let delay = 150; delay <= 10000; delay += 250) setTimeout(closeMenu, delay);
})();
</script>"""

NOTICES = "_page_notices"
SIDEBAR_IMAGE = "_sidebar_image_slot"


def show_current_image() -> None:
    """(Re)draw the sidebar's "Current image" line; called again whenever the upload changes in this run, so the
    sidebar never lags one upload behind."""
    slot = st.session_state.get(SIDEBAR_IMAGE)
    if slot is None:
        return
    upload = current_upload()
    slot.caption(f"Current image: **{upload_label(upload)}**" if upload else "No image uploaded yet.")


def notice(text: str, level: str = "warning", icon: str = "⚠️") -> None:
    """Show a warning (or error) on the page and record it for the page's PDF report."""
    (st.error if level == "error" else st.warning)(text, icon=icon)
    st.session_state.setdefault(NOTICES, []).append(text.replace("**", ""))


def page_notices() -> list[str]:
    """Every warning, override and flag shown on this page in this run, in order (for the PDF)."""
    return list(st.session_state.get(NOTICES, []))


@dataclass
class Upload:
    """The user's file, kept in this browser session's memory only."""

    name: str
    data: bytes
    number: int = 1  # the session's n-th upload: its neutral name is "upload <number>"

    @property
    def key(self) -> str:
        return hashlib.sha256(self.data).hexdigest()[:16]


def upload_label(upload: Upload | None = None) -> str:
    """The name the app shows for an upload: its file name, or "upload N" when the name looks like an identifier
    or holds one of the DICOM patient fields that are hidden (RSNA files are named by their PatientID)."""
    upload = upload or current_upload()
    if upload is None:
        return ""
    memo = st.session_state.get("loaded")
    decoded = memo[1] if memo and memo[0] == upload.key else None
    hidden = decoded.patient.values() if isinstance(decoded, LoadedImage) else ()
    return shown_name(upload.name, upload.number, hidden)


@st.cache_resource(show_spinner=False)
def all_model_cards() -> dict[str, ModelCard]:
    """Every card in weights/, including the gate, the backbone and compared variants. Read once per
    process and shared read-only (cache_data would unpickle a fresh copy on each of the several calls
    a page makes per rerun)."""
    return available_models()


def model_cards() -> dict[str, ModelCard]:
    """The models the app offers for predictions."""
    return {name: card for name, card in all_model_cards().items() if card.deployed}


def per_upload(slot: str, frame: int, compute):
    """`compute()` once per upload and frame, kept in the session under `slot` (cleared with the upload)."""
    upload = current_upload()
    key = (upload.key if upload else "", frame)
    memo = st.session_state.get(slot)
    if memo is None or memo[0] != key:
        memo = (key, compute())
        st.session_state[slot] = memo
    return memo[1]


def gate_verdict(image: LoadedImage, frame: int = 0) -> GateVerdict | None:
    """What the out-of-distribution gate makes of the image (memoised per upload and frame); None without a gate."""
    if "gate" not in all_model_cards():
        return None
    return per_upload("gate", frame, lambda: screen(model_call(inference.gate_check, image.frame(frame)), image, frame))


def gate_allows(image: LoadedImage, expected: str, frame: int = 0) -> bool:
    """Show the gate's verdict for a page that expects `expected` images. True: go on with the prediction
    (the image fits, or the user asked to see the answer anyway, which is then flagged)."""
    verdict = gate_verdict(image, frame)
    if verdict is None or verdict.fits(expected):
        if verdict is not None and verdict.probabilities[expected] < 0.9:
            notice(
                verdict.reason(expected) + " The gate is not sure, though: check that the image is what the page "
                "expects before reading the answer.",
                icon="❔",
            )
        elif verdict is not None:
            st.caption("✅ " + verdict.reason(expected))
        return True
    notice(verdict.reason(expected) + " The prediction is withheld.", icon="🚫")
    if verdict.kind in PAGE_FOR_KIND:
        script, label, icon = PAGE_FOR_KIND[verdict.kind]
        st.page_link(script, label=f"Open the {label} page, which fits this image", icon=icon)
    left, _ = st.columns([1, 2])
    left.image(fit_for_display(to_rgb8(image.frame(frame)), 384), caption="The image the gate refused")
    anyway = st.checkbox(
        "Show the model's answer anyway (it will be marked as outside what the model knows)",
        value=False,
        key=f"gate_override_{expected}",
    )
    if anyway:
        notice(
            "Shown anyway at the user's request: outside what the model knows, the answer below is not meaningful "
            "for this image.",
            level="error",
        )
    return anyway


@st.cache_data(show_spinner=False)
def sample_images() -> list[SampleImage]:
    return list_samples()


def current_upload() -> Upload | None:
    return st.session_state.get("upload")


def set_upload(name: str, data: bytes) -> None:
    number = st.session_state.get("upload_count", 0) + 1
    st.session_state["upload_count"] = number
    st.session_state["upload"] = Upload(name=name, data=data, number=number)
    for key in RESULT_KEYS:
        st.session_state.pop(key, None)
    show_current_image()


RESULT_KEYS = ("loaded", "results", "mri_results", "ct_result", "report_pdf", "gate", "source")


def clear_upload() -> None:
    """Forget the image and everything computed from it; empty the uploader too."""
    for key in ("upload", "uploader_file_id", *RESULT_KEYS):
        st.session_state.pop(key, None)
    st.session_state["uploader_generation"] = st.session_state.get("uploader_generation", 0) + 1
    show_current_image()


def loaded_image() -> LoadedImage | ScanSightError | None:
    """The decoded current upload (memoised in the session), or the error it raised."""
    upload = current_upload()
    if upload is None:
        return None
    memo = st.session_state.get("loaded")
    if memo is None or memo[0] != upload.key:
        try:  # decoded in the memory-capped decoding process: a decoder crash or a bomb ends this upload only
            result: LoadedImage | ScanSightError = run_decoder(load_image, upload.data, upload.name, tag=upload.key)
        except ScanSightError as error:
            result = error
        st.session_state["loaded"] = (upload.key, result)
        memo = st.session_state["loaded"]
        show_current_image()  # the patient fields are known now: the sidebar name may become neutral
    return memo[1]


def test_figures(card: ModelCard) -> list[tuple[str, str]]:
    """The card's held-out test figures as (label, value), whatever kind of model it is."""
    test = card.metrics.get("test", {})
    layout = [
        ("Images", "n", "{:d}"),
        ("Patients", "n_patients", "{:d}"),
        ("Accuracy", "accuracy", "{:.1%}"),
        ("Sensitivity", "sensitivity", "{:.1%}"),
        ("Specificity", "specificity", "{:.1%}"),
        ("AUC", "auc", "{:.3f}"),
        ("Macro-F1", "macro_f1", "{:.3f}"),
        ("Dice, mean", "dice_mean", "{:.3f}"),
        ("Dice, median", "dice_median", "{:.3f}"),
        ("IoU", "iou", "{:.3f}"),
        ("IoU, mean", "iou_mean", "{:.3f}"),
    ]
    if card.task == "segmentation":
        layout = [row for row in layout if row[1] not in ("accuracy", "auc")]
    if test.get("n_patients") == test.get("n") and card.task == "covid":  # no patient ids in that set
        layout = [row for row in layout if row[1] != "n_patients"]
    return [(label, fmt.format(test[key])) for label, key, fmt in layout if test.get(key) is not None]


def test_caption(card: ModelCard) -> None:
    """One caption line with the card's held-out test figures (nothing when there are none)."""
    figures = test_figures(card)
    if figures:
        st.caption("Held-out test: " + ", ".join(f"{label} {value}" for label, value in figures) + ".")


def report_button(memo_key: tuple, make_report, file_name: str) -> None:
    """A PDF download; the PDF is built once per memo_key, not on every rerun of the page."""
    from core.io.report import build_pdf

    keep_name = st.checkbox("Put the original file name in the report", value=False, key="report_keep_name")
    notices = page_notices()
    memo_key = (memo_key, tuple(notices), keep_name)
    memo = st.session_state.get("report_pdf")
    if memo is None or memo[0] != memo_key:
        content = make_report()
        content.warnings = notices + [w for w in content.warnings if w not in notices]
        content.file_name = current_upload().name if keep_name else upload_label()
        memo = (memo_key, build_pdf(content))
        st.session_state["report_pdf"] = memo
    st.download_button("Download PDF report", memo[1], file_name=file_name, mime="application/pdf", icon="📄")


def model_call(function, *args, **kwargs):
    """`function(*args)` (from `core.tasks.inference`) in a model process, tagged with the upload; a typed error, or
    the process stopping under it, becomes a message and the page stops (the server and other sessions go on)."""
    upload = current_upload()
    return run_guarded(run_model, function, *args, tag=upload.key if upload else "", **kwargs)


def run_guarded(action, *args, **kwargs):
    """Run a model call; a typed error becomes a message and the page stops (no traceback)."""
    try:
        return action(*args, **kwargs)
    except ScanSightError as error:
        show_error(error)
        st.stop()


def show_error(error: ScanSightError) -> None:
    st.error(str(error), icon="⚠️")
    st.info(error.hint, icon="💡")


def require_image() -> LoadedImage | None:
    """The current image, or a message saying why there is none (then the page stops drawing)."""
    image = loaded_image()
    if image is None:
        st.info("No image yet: upload a chest X-ray, brain MRI or CT slice on the **Upload** page first.", icon="📤")
        st.page_link("pages/upload.py", label="Go to Upload", icon="📤")
        return None
    if isinstance(image, ScanSightError):
        show_error(image)
        return None
    return image


def frame_picker(image: LoadedImage, key: str) -> int:
    if image.n_frames <= 1:
        return 0
    return int(st.slider("Frame", 1, image.n_frames, 1, key=key)) - 1


SOURCE_WARNING_CONFIDENCE = 0.8  # below this, the source detector's call is shown as unclear, without a warning


def source_warning(image: LoadedImage, card: ModelCard, frame: int = 0) -> None:
    """Warn when the image looks like the other chest X-ray source (adult vs paediatric) than the model's,
    with what the shortcut check measured for that model on such images."""
    from core.checks.shortcut import SOURCE_OF_MODEL

    trained_on = SOURCE_OF_MODEL.get(card.task)
    if trained_on is None or "chest-backbone" not in all_model_cards():
        return
    p_adult = per_upload("source", frame, lambda: model_call(inference.adult_probability, image.frame(frame)))
    looks = "adult" if p_adult >= 0.5 else "paediatric"
    confidence = max(p_adult, 1 - p_adult)
    if confidence < SOURCE_WARNING_CONFIDENCE:
        st.caption(
            f"Children's or adults' X-ray? Unclear (P({looks}) = {confidence:.0%}); this model only saw "
            f"{trained_on} ones."
        )
        return
    if looks == trained_on:
        st.caption(f"The image looks like the {looks} X-rays this model was trained on (P = {confidence:.0%}).")
        return
    finding = card.findings.get("shortcut", {}).get("summary", "")
    other = "COVID-19 or normal? (adults)" if trained_on == "paediatric" else "Pneumonia or normal? (children)"
    article = "an" if looks == "adult" else "a"
    notice(
        f"This image looks like {article} **{looks}** chest X-ray (P = {confidence:.0%}), but this model only "
        f"saw **{trained_on}** ones. Shortcut check: {finding} Its answer here says more about where the image "
        f'comes from than about the lungs; the question "{other}" fits this image better.',
        icon="🧒" if trained_on == "paediatric" else "🧑",
    )
