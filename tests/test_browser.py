"""The app in a real browser (Debian's Chromium through Playwright): the Chest, Brain MRI and CT pages each give a
result with its heatmap or mask, one after another in one session, and the server stays up. Skipped, with the
reason, where Chromium or Playwright is not installed (`.ci/run` installs both)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO, data_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="Python playwright is not installed"),
]


def first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def test_chest_mri_and_ct_pages_give_results_one_after_another_in_one_session(tmp_path):
    from tests.browser_check import walk

    chest = first(data_path("chest_xray", "test", "PNEUMONIA"), "*.jpeg")
    mri = next(p for p in sorted(data_path("lgg_mri").rglob("*.jpg")) if "mask" not in p.name)
    ct = sorted(p for p in data_path("covid_ct_seg", "test", "images").iterdir() if p.is_file())[0]
    steps = [(chest, "prediction"), (mri, "mri"), (ct, "ct")]
    failures = walk(steps, REPO / "runs" / "browser-walk")
    assert failures == []


def test_every_page_on_a_desktop_and_a_phone_with_the_samples_bad_files_and_the_pdfs(tmp_path):
    from tests.walk_check import run

    data = data_path("covid_ct_seg").parent
    failures = run(REPO / "runs" / "walk", data)
    assert failures == []
