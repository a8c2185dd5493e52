"""The TensorFlow runtime setting: the oneDNN crash repro survives under it, every committed model's Grad-CAM
survives, and every entry point has the setting in effect before TensorFlow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from core.runtime import CRASH_SETTING, TF_RUNTIME_DEFAULTS, has_avx512
from tests.helpers import REPO

#: Variables that would override the project's own setting: removed so the tests see the project's choice.
OVERRIDES = ("ONEDNN_MAX_CPU_ISA", "TF_ENABLE_ONEDNN_OPTS")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDES}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def run_python(code: str, env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.slow
def test_onednn_repro_survives_under_the_project_setting():
    done = run_python("import core.runtime as r; print(r.onednn_repro())", clean_env())
    assert done.returncode == 0, f"exit code {done.returncode} (negative: killed by a signal)\n{done.stderr[-2000:]}"


@pytest.mark.slow
def test_gradcam_of_every_committed_model_survives_under_the_project_setting():
    code = """
        import numpy as np, core
        from core.models.scan_model import ScanModel, available_models
        from core.explain.gradcam import heatmap
        pixels = np.random.default_rng(0).random((256, 256, 3), dtype=np.float32)
        for name in available_models():
            model = ScanModel.load(name)
            if model.card.task == "segmentation":
                model.segment(pixels)
            else:
                heatmap(model, pixels)
            print("ok", name, flush=True)
    """
    done = run_python(code, clean_env())
    assert done.returncode == 0, f"exit code {done.returncode}; survived: {done.stdout.split()}\n{done.stderr[-2000:]}"


@pytest.mark.slow
@pytest.mark.skipif(not has_avx512(), reason="this CPU has no AVX-512: the oneDNN crash cannot happen here")
def test_the_repro_is_real_without_the_setting_on_this_avx512_cpu():
    """Shows that the first test can fail: with oneDNN's full instruction set the same code dies on AVX-512."""
    done = run_python("import core.runtime as r; r.onednn_repro()", clean_env(**{CRASH_SETTING: "1"}))
    assert done.returncode != 0


PROBE = """
    import importlib.abc, os, runpy, sys
    SETTING = {setting!r}
    seen = []

    class Watch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" and not seen:
                seen.append(os.environ.get(SETTING))
            return None

    sys.meta_path.insert(0, Watch())
    entry = {entry!r}
    if entry.endswith(".py"):
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file(entry, default_timeout=120)
        at.run()
    else:
        sys.argv = [entry, "--help"]
        try:
            runpy.run_module(entry, run_name="__main__")
        except SystemExit:
            pass
    print("AT_TF_IMPORT", seen[0] if seen else "not imported")
    print("AFTER", os.environ.get(SETTING))
"""

CLI_MODULES = sorted(
    f"core.{path.stem}" for path in (REPO / "core").glob("*.py") if '__name__ == "__main__"' in path.read_text()
)
APP_SCRIPTS = ["app.py", *sorted(f"pages/{path.name}" for path in (REPO / "pages").glob("*.py"))]


ENTRIES = [  # `python -m core.runtime` runs the oneDNN repro itself (seconds, like the slow repro test above)
    pytest.param(entry, marks=pytest.mark.slow) if entry == "core.runtime" else entry
    for entry in CLI_MODULES + APP_SCRIPTS
]


@pytest.mark.parametrize("entry", ENTRIES)
def test_every_entry_point_has_the_setting_before_tensorflow(entry):
    done = run_python(PROBE.format(setting=CRASH_SETTING, entry=entry), clean_env(), timeout=180)
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if line.startswith(("AT_TF_IMPORT", "AFTER")))
    expected = TF_RUNTIME_DEFAULTS[CRASH_SETTING]
    assert lines.get("AFTER") == expected, f"{entry}: setting not applied\n{done.stderr[-1500:]}"
    assert lines.get("AT_TF_IMPORT") in (expected, "not imported"), f"{entry}: TensorFlow imported before the setting"


def test_the_environment_overrides_the_default():
    done = run_python(f"import core, os; print(os.environ['{CRASH_SETTING}'])", clean_env(**{CRASH_SETTING: "1"}))
    assert done.stdout.strip() == "1"


def test_dockerfile_sets_the_same_runtime():
    dockerfile = (REPO / "Dockerfile").read_text()
    for name, value in TF_RUNTIME_DEFAULTS.items():
        assert f"{name}={value}" in dockerfile, f"Dockerfile ENV lacks {name}={value}"
