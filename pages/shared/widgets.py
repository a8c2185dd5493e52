"""Shared UI pieces for the pages: the menu and what every page draws around its content (the frame), notices,
error display, the cached model cards and their figures, the gate, model calls, the frame picker, the PDF button.
UI only; the session's state (the upload, per-upload memos) is in state.py."""

from __future__ import annotations

import streamlit as st
from streamlit import config

from core.errors import ScanSightError
from core.explain.overlay import fit_for_display, to_rgb8
from core.io.loading import LoadedImage
from core.io.samples import SampleImage, list_samples
from core.models.cards import ModelCard
from core.models.scan_model import available_models
from core.models.worker import run_model
from core.tasks import inference
from core.tasks.gate import GateVerdict, screen
from pages.shared.state import (
    FRAMED,
    GATE,
    NOTICES,
    PAGE_RUNS,
    REPORT_PDF,
    SIDEBAR_IMAGE,
    SOURCE,
    current_upload,
    loaded_image,
    per_upload,
    show_current_image,
    upload_key,
    upload_label,
)

DISCLAIMER = (
    "ScanSight is a teaching and demonstration tool. It is **not a medical device** and does "
    "**not** give a diagnosis: never use its output to make clinical decisions."
)


#: The app's pages in menu order: (script, title, icon). Each page's URL is its file name (/upload, /prediction,
#: /mri...; Home is /). Links inside pages name the script (st.page_link("pages/upload.py")).
MENU = [
    ("pages/home.py", "Home", "🏠"),
    ("pages/upload.py", "Upload", "📤"),
    ("pages/preprocessing.py", "Preprocessing preview", "🎛️"),
    ("pages/prediction.py", "Chest X-ray prediction", "🔎"),
    ("pages/mri.py", "Brain MRI", "🧠"),
    ("pages/ct.py", "CT lung infection", "🫁"),
    ("pages/batch.py", "Batch", "🗂️"),
    ("pages/study.py", "Preprocessing study", "🧪"),
    ("pages/model_card.py", "Model cards", "📋"),
]

#: The page that fits each kind of image the gate recognises: (script, label, icon).
PAGE_FOR_KIND = {
    kind: next(entry for entry in MENU if entry[0] == script)
    for kind, script in {"chest-xray": "pages/prediction.py", "brain-mri": "pages/mri.py", "ct": "pages/ct.py"}.items()
}


def app_pages() -> list:
    """The pages for st.navigation, Home first (the default page)."""
    return [st.Page(script, title=title, icon=icon, default=i == 0) for i, (script, title, icon) in enumerate(MENU)]


def ensure_frame() -> None:
    """Every page calls this first. Normally app.py has drawn the menu and the frame (page_setup) and this does
    nothing. But Streamlit runs a page straight from the pages/ folder, without app.py (its legacy multipage mode),
    until st.navigation has run once in the server process: a fresh server's first visit by a page's own URL, and
    every AppTest run. st.navigation here ends that mode for the process. Outside AppTest the page is then run again
    through app.py at once, before it draws a widget: Streamlit keys a widget by the page that runs it, and in this
    run the keys would be those of app.py's hash, not the page's, so a file given to this run's uploader was lost on
    the next run (a fresh server's first upload vanished). AppTest puts every run back into the legacy mode, so its
    runs stay there (their keys agree with each other) and the page draws the frame itself."""
    if st.session_state.pop(FRAMED, False):
        return
    page = st.navigation(app_pages())
    if not config.get_option("global.appTest"):  # Streamlit's own flag, set while AppTest runs a script
        st.switch_page(page)  # the same page, through app.py; nothing of this run is shown. (No query parameters
        # are carried: the app uses none.)
    page_setup(page.title)
    st.session_state.pop(FRAMED, None)


def page_setup(title: str) -> None:
    """What every page shares, drawn by app.py before it runs the page (st.navigation draws the menu): the page
    config, the phone menu script, the current image and the notice in the sidebar."""
    st.session_state[FRAMED] = True  # for ensure_frame
    st.set_page_config(page_title=f"{title} · ScanSight", page_icon="🩻", layout="wide")
    st.session_state[NOTICES] = []
    runs = st.session_state[PAGE_RUNS] = st.session_state.get(PAGE_RUNS, 0) + 1
    # The run number inside the script makes its text new on each run, so the browser runs it again: the element
    # stays in place across pages (app.py draws it), and an HTML comment would not do (the browser's sanitiser
    # drops comments, and an unchanged element is not run again).
    st.html(CLOSE_MENU_ON_PHONES.replace("<script>", f"<script>/* run {runs} */", 1), unsafe_allow_javascript=True)
    with st.sidebar:
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


def notice(text: str, level: str = "warning", icon: str = "⚠️") -> None:
    """Show a warning (or error) on the page and record it for the page's PDF report."""
    (st.error if level == "error" else st.warning)(text, icon=icon)
    st.session_state.setdefault(NOTICES, []).append(text.replace("**", ""))


def page_notices() -> list[str]:
    """Every warning, override and flag shown on this page in this run, in order (for the PDF)."""
    return list(st.session_state.get(NOTICES, []))


@st.cache_resource(show_spinner=False)
def all_model_cards() -> dict[str, ModelCard]:
    """Every card in weights/, including the gate, the backbone and compared variants. Read once per
    process and shared read-only (cache_data would unpickle a fresh copy on each of the several calls
    a page makes per rerun)."""
    return available_models()


def model_cards() -> dict[str, ModelCard]:
    """The models the app offers for predictions."""
    return {name: card for name, card in all_model_cards().items() if card.deployed}


@st.cache_data(show_spinner=False)
def sample_images() -> list[SampleImage]:
    return list_samples()


def gate_verdict(image: LoadedImage, frame: int = 0) -> GateVerdict | None:
    """What the out-of-distribution gate makes of the image (once per upload and frame); None without a gate."""
    if "gate" not in all_model_cards():
        return None
    return per_upload(GATE, lambda: screen(model_call(inference.gate_check, image.frame(frame)), image, frame), frame)


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


def report_button(parts: tuple, make_report, file_name: str) -> None:
    """A PDF download; the PDF is built once per upload and `parts` (what the page drew it from), not on every rerun."""
    from core.io.report import build_pdf

    keep_name = st.checkbox("Put the original file name in the report", value=False, key="report_keep_name")
    notices = page_notices()

    def build() -> bytes:
        content = make_report()
        content.warnings = notices + [w for w in content.warnings if w not in notices]
        content.file_name = current_upload().name if keep_name else upload_label()
        return build_pdf(content)

    pdf = per_upload(REPORT_PDF, build, parts, tuple(notices), keep_name)
    st.download_button("Download PDF report", pdf, file_name=file_name, mime="application/pdf", icon="📄")


def model_call(function, *args, **kwargs):
    """`function(*args)` (from `core.tasks.inference`) in a model process, tagged with the upload; a typed error, or
    the process stopping under it, becomes a message and the page stops (the server and other sessions go on)."""
    return run_guarded(run_model, function, *args, tag=upload_key(), **kwargs)


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
    p_adult = per_upload(SOURCE, lambda: model_call(inference.adult_probability, image.frame(frame)), frame)
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
