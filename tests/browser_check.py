"""Real-browser check (not part of the pytest suite): start the app on 127.0.0.1, upload files in
headless Chromium, open the result pages and save screenshots.

    apt-get install -y chromium && pip install playwright==1.65.2
    python tests/browser_check.py --out runs/browser FILE [FILE ...]

Each FILE is uploaded in turn; the chest X-ray prediction page (or, for `--page mri`, the brain MRI
page) is opened and must show its result without an exception. Exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
EXPECTED = {"prediction": "Model answer", "mri": "Predicted tumour mask", "ct": "Infected area on this slice"}
PAGE_LABEL = {"prediction": "Chest X-ray prediction", "mri": "Brain MRI", "ct": "CT lung infection"}


def start_app() -> tuple[subprocess.Popen, int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read()
            return process, port
        except OSError:
            time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the app did not start within 60 s")


def check(files: list[Path], page: str, out: Path) -> int:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    process, port = start_app()
    failures = 0
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            for number, path in enumerate(files):
                context = browser.new_context(viewport={"width": 1400, "height": 1000})
                tab = context.new_page()
                tab.goto(f"http://127.0.0.1:{port}/upload", wait_until="networkidle")
                tab.locator("input[type=file]").set_input_files(str(path))
                tab.get_by_text("Format:").first.wait_for(timeout=60_000)
                tab.screenshot(path=out / f"{number:02d}-upload-{path.stem}.png", full_page=True)
                tab.get_by_role("link", name=PAGE_LABEL[page]).first.click()
                try:
                    tab.get_by_text(EXPECTED[page]).first.wait_for(timeout=90_000)
                    tab.wait_for_timeout(1500)
                    status = "ok"
                except Exception as error:  # report it and go on to the next file
                    status = f"FAILED ({type(error).__name__})"
                    failures += 1
                if tab.get_by_text("Traceback").count():
                    status, failures = "FAILED (traceback shown)", failures + 1
                shot = out / f"{number:02d}-{page}-{path.stem}.png"
                tab.screenshot(path=shot, full_page=True)
                print(f"{path.name}: {status} -> {shot}")
                context.close()
            browser.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 1 if failures else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--page", choices=sorted(EXPECTED), default="prediction")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "browser")
    args = parser.parse_args()
    return check(args.files, args.page, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
