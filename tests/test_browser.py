"""The app in a real browser (Debian's Chromium through Playwright, `tests/walk_check.py`): every page on a desktop
and a phone, the Chest, Brain MRI and CT pages each giving a result with its heatmap or mask one after another in
one session, the server staying up. Skipped, with the reason, where Chromium or Playwright is not installed
(`.ci/run` installs both)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.helpers import REPO, data_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="Python playwright is not installed"),
]


def test_every_page_on_a_desktop_and_a_phone_with_the_samples_bad_files_and_the_pdfs(tmp_path):
    from tests.walk_check import run

    data = data_path("covid_ct_seg").parent
    failures = run(REPO / "runs" / "walk", data)
    assert failures == []
