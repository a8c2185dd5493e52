"""Walk every page in a real browser, as a clinician or a presenter would, on a desktop and a phone viewport.

    python tests/walk_check.py --out runs/walk        (Debian's chromium and Python playwright needed)

First a fresh server's first visit by its /upload link, a file given at once; then one browser session per
viewport, moving between pages with the menu (a reload would start a new session): the demo samples, a CT test
slice, a file named by its PatientID, a damaged file, a batch; each result page's PDF is downloaded and read back
with pypdf. Screenshots of every step go to --out. Exits non-zero on any failed check; `tests/test_browser.py`
runs it in the suite.
"""

from __future__ import annotations

import argparse
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.browser_check import FLAGS, start_app  # noqa: E402

SAMPLES = REPO / "assets" / "samples"
VIEWPORTS = {"desktop": {"width": 1400, "height": 1000}, "phone": {"width": 390, "height": 844}}


@dataclass
class Walk:
    tab: object
    out: Path
    viewport: str
    failures: list[str] = field(default_factory=list)
    notes: set[str] = field(default_factory=set)
    shots: int = 0

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            self.failures.append(f"[{self.viewport}] {what}")

    def shot(self, name: str) -> None:
        self.shots += 1
        self.tab.screenshot(path=self.out / f"{self.viewport}-{self.shots:02d}-{name}.png", full_page=True)

    def text(self) -> str:
        return self.tab.locator("body").inner_text()

    def wait_for(self, text: str, timeout: int = 120_000) -> bool:
        try:
            self.tab.get_by_text(text).first.wait_for(timeout=timeout)
            return True
        except Exception:
            return False

    def go(self, label: str) -> None:
        """Open a page through the menu (opening the sidebar first on a phone)."""
        sidebar = self.tab.locator('[data-testid="stSidebar"]')
        box = sidebar.bounding_box()
        if box is None or box["x"] < 0 or box["width"] == 0:
            self.tab.locator('[data-testid="stExpandSidebarButton"]').first.click()
            self.tab.wait_for_timeout(600)
        before = self.tab.url
        sidebar.locator("a", has_text=re.compile(f"{re.escape(label)}$")).first.click()
        for _ in range(16):  # on a phone the menu must close once the new page draws (within 8 s here)
            self.tab.wait_for_timeout(500)
            box = sidebar.bounding_box()
            if box is None or box["x"] < 0 or box["width"] == 0:
                break
        if self.viewport == "phone" and box is not None and box["x"] >= 0 and box["width"] > 0:
            moved = self.tab.url != before  # a tap on the page already open changes nothing
            self.check(not moved, f"the menu stayed open over the page after a tap on '{label}'")
            sidebar.locator('[data-testid="stSidebarCollapseButton"] button').first.click()
            self.tab.wait_for_timeout(600)

    def upload(self, path: Path) -> None:
        self.go("Upload")
        self.tab.locator("input[type=file]").first.set_input_files(str(path))
        self.wait_for("Format:", 60_000) or self.wait_for("could not", 5_000)
        self.tab.wait_for_timeout(800)

    def sidebar_text(self) -> str:
        return self.tab.locator('[data-testid="stSidebar"]').text_content() or ""

    def pdf(self) -> str:
        """Download the page's PDF report and return its text."""
        from pypdf import PdfReader

        with self.tab.expect_download(timeout=60_000) as info:
            self.tab.get_by_role("button", name=re.compile("Download PDF report")).first.click()
        data = Path(info.value.path()).read_bytes()
        return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)

    def no_traceback(self, where: str) -> None:
        text = self.text()
        self.check("Traceback" not in text and "Connection error" not in text, f"{where}: a traceback or lost server")


def walk(tab, out: Path, viewport: str, data: Path, port: int) -> list[str]:
    w = Walk(tab, out, viewport)
    tab.goto(f"http://127.0.0.1:{port}/", wait_until="networkidle")
    w.wait_for("How to use it")
    w.check("not a medical device" in w.text(), "Home: the disclaimer")
    # a wait, not a count: the first page link of a browser tab draws once its script has loaded
    w.check(w.wait_for("Start: upload an image", 20_000), "Home: a link to Upload in its body")
    w.shot("home")

    chest = SAMPLES / "chest-xray-child-viral-pneumonia.jpeg"
    w.upload(chest)
    w.check(chest.name in w.sidebar_text(), "sidebar names the image just uploaded")
    w.check("Reloading the browser tab" in w.text(), "Upload: says a reload forgets the image")
    w.shot("upload-chest")
    w.go("Chest X-ray prediction")
    w.check(w.wait_for("so the answer is"), "Chest: the answer with its operating point")
    w.check(w.wait_for("Grad-CAM for"), "Chest: the heatmap")
    w.check(tab.get_by_text("operating point").count() > 0, "Chest: the operating point named")
    w.no_traceback("Chest")
    w.shot("chest")
    text = w.pdf()
    w.check("Model answer" in text and "ScanSight report" in text, "Chest PDF: the answer")

    mri = SAMPLES / "brain-mri-lgg-patient-1-tumour.jpg"
    w.upload(mri)
    w.go("Brain MRI")
    w.check(w.wait_for("Tumour area on this slice"), "MRI: the tumour area")
    w.no_traceback("MRI")
    w.shot("mri")
    w.check("Tumour area" in w.pdf(), "MRI PDF: the area")
    tab.locator("button", has_text=re.compile(r"^\s*A whole study\s*$")).first.click()
    w.wait_for("or a sample study")
    tab.get_by_label("…or a sample study").first.click()
    tab.get_by_role("option", name=re.compile("Brain MRI study")).first.click()
    w.check(w.wait_for("Slices with tumour"), "MRI study: the result")
    volume = re.search(r"Tumour volume\s*([\d.]+) mL", w.text())
    w.check(volume is not None and float(volume.group(1)) > 0, "MRI study: a volume in mL")
    w.check("assumed" in w.text(), "MRI study: the voxel-size assumption stated")
    # the slice image and its caption draw after the metrics and the chart: wait for them, do not race them
    w.check(w.wait_for("largest tumour area", 60_000), "MRI study: the slice with the largest area shown first")
    w.no_traceback("MRI study")
    w.shot("mri-study")
    tab.locator("button", has_text=re.compile(r"^\s*One slice\s*$")).first.click()
    w.wait_for("Tumour area on this slice")
    w.go("Chest X-ray prediction")
    w.check(w.wait_for("The prediction is withheld"), "Chest with an MRI slice: withheld")
    w.check(tab.get_by_role("link", name=re.compile("Open the Brain MRI page")).count() > 0, "withheld: a page link")
    w.check(tab.get_by_text("The image the gate refused").count() > 0, "withheld: the refused image shown")
    w.shot("chest-withheld")

    ct_slices = sorted((data / "covid_ct_seg" / "test" / "images").glob("*.jpg"))
    if ct_slices:
        w.upload(ct_slices[0])
        w.go("CT lung infection")
        w.check(w.wait_for("Infected area on this slice"), "CT: the infected area")
        share = re.search(r"Infected share of the lungs\s*([\d.]+)%", w.text())
        w.check(share is None or float(share.group(1)) <= 100, "CT: a share above 100%")
        w.no_traceback("CT")
        w.shot("ct")
        w.check("Infected area" in w.pdf(), "CT PDF: the area")

    rsna = sorted((data / "rsna_sample").glob("*.dcm"))
    if rsna:
        w.upload(rsna[0])
        w.check(rsna[0].stem not in w.text() + w.sidebar_text(), "a PatientID file name is shown")
        w.check("upload" in w.sidebar_text(), "sidebar: a neutral name for a PatientID file name")
        w.shot("rsna-neutral-name")

    broken = out / "broken.png"
    broken.write_bytes(chest.read_bytes()[:0] + b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    w.upload(broken)
    w.check(w.wait_for("damaged or truncated", 20_000), "a damaged file: a clear message")
    w.no_traceback("damaged file")
    w.shot("damaged")

    w.go("Batch")
    w.wait_for("Images or a .zip")
    tab.locator("input[type=file]").first.set_input_files([str(chest), str(mri), str(broken)])
    w.check(w.wait_for("3 files:"), "Batch: the summary")
    w.check("1 could not be read" in w.text(), "Batch: the unreadable file counted")
    tab.wait_for_timeout(3000)  # the table draws on a canvas after the summary
    w.shot("batch")

    w.go("Preprocessing study")
    w.check(w.wait_for("mean ± std over folds", 60_000) or tab.locator(".js-plotly-plot").count() > 0, "Study: chart")
    w.shot("study")
    w.go("Model cards")
    w.check(w.wait_for("Data and split"), "Model cards: data and split")
    w.shot("model-cards")

    tab.goto(f"http://127.0.0.1:{port}/batch", wait_until="networkidle")  # a bookmarked page's own URL
    w.check(w.wait_for("Images or a .zip"), "a page's own URL opens that page")
    w.check("Chest X-ray prediction" in w.sidebar_text(), "a page's own URL shows the app's menu, not file names")
    for note in sorted(w.notes):
        print(f"[{viewport}] note: {note}")
    return w.failures


def first_visit_by_a_page_url(browser, out: Path, port: int) -> list[str]:
    """The server's first visitor opens /upload (a shared link) and gives a file at once, while that first run of the
    page may still be going: the file must be taken (it was lost once, when Streamlit's legacy page mode keyed the
    uploader differently from the next run; `pages/shared/widgets.ensure_frame`). Runs before anything else."""
    context = browser.new_context(viewport=VIEWPORTS["desktop"])
    tab = context.new_page()
    tab.set_default_timeout(120_000)  # a fresh server on a busy machine: TensorFlow's import comes first
    w = Walk(tab, out, "first-visit")
    try:
        tab.goto(f"http://127.0.0.1:{port}/upload", wait_until="networkidle")
        tab.locator("input[type=file]").first.set_input_files(str(SAMPLES / "chest-xray-child-normal.jpeg"))
        w.check(w.wait_for("Format:", 60_000), "a fresh server's first upload, on /upload, was taken")
        w.check(tab.url.rstrip("/").endswith("/upload"), f"/upload stays the Upload page (now {tab.url})")
        w.check("Chest X-ray prediction" in w.sidebar_text(), "/upload shows the app's menu")
        w.shot("upload")
    except Exception as error:
        w.failures.append(f"[first-visit] stopped: {type(error).__name__}: {str(error)[:200]}")
    context.close()
    return w.failures


def run(out: Path, data: Path, viewports: list[str] | None = None) -> list[str]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    process, port = start_app()
    failures: list[str] = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            failures += first_visit_by_a_page_url(browser, out, port)
            for name in viewports or list(VIEWPORTS):
                phone = name == "phone"
                context = browser.new_context(viewport=VIEWPORTS[name], is_mobile=phone, has_touch=phone,
                                              accept_downloads=True)  # fmt: skip
                tab = context.new_page()
                tab.set_default_timeout(120_000)
                try:
                    failures += walk(tab, out, name, data, port)
                except Exception as error:  # a step that could not even run is a failure too
                    failures.append(f"[{name}] the walk stopped: {type(error).__name__}: {str(error)[:200]}")
                    tab.screenshot(path=out / f"{name}-stopped.png", full_page=True)
                context.close()
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "walk")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--viewport", choices=sorted(VIEWPORTS), action="append")
    args = parser.parse_args()
    failures = run(args.out, args.data, args.viewport)
    print("\n".join(failures) or "every check passed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
