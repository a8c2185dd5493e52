"""Batch over an archive with Ray Data (`core.cli.archive`): same rows as the local CLI, resume, broken files,
Ctrl-C, privacy. Skipped with the reason where Ray (requirements-scale.txt) is not installed."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import REPO, data_path, png_bytes

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -r requirements-scale.txt")
pq = pytest.importorskip("pyarrow.parquet")

from core.cli.archive import done_hashes, list_items, lite_forward, run_archive  # noqa: E402
from core.cli.predict import expand, predict_files  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    yield
    if ray.is_initialized():
        ray.shutdown()


def mixed_archive(folder: Path, n_total: int = 2000) -> Path:
    """Chest X-rays (children and adults), brain MRI and CT slices, non-medical pictures and broken files, in
    nested folders and a zip: `n_total` images in all."""
    from skimage import data as pictures

    chest = sorted(data_path("chest_xray", "test").rglob("*.jpeg"))
    adults = sorted(data_path("covid_radiography").rglob("*.png"))[::10]
    mri = sorted(p for p in data_path("lgg_mri").rglob("*.jpg"))[::3]
    ct = sorted(data_path("covid_ct_seg", "test", "images").glob("*.jpg"))
    (folder / "chest" / "deep").mkdir(parents=True)
    (folder / "mri").mkdir()
    (folder / "other").mkdir()
    broken = {"empty.png": b"", "text.jpg": b"not an image", "cut.png": png_bytes(np.zeros((64, 64), np.uint8))[:40]}
    for name, content in broken.items():
        (folder / "other" / name).write_bytes(content)
    photos = [pictures.astronaut(), pictures.coffee(), pictures.chelsea(), pictures.rocket()]
    for i, photo in enumerate(photos):
        (folder / "other" / f"photo_{i}.png").write_bytes(png_bytes(photo))
    count = len(broken) + len(photos)
    with zipfile.ZipFile(folder / "mri" / "slices.zip", "w") as archive:
        for path in mri[:100]:
            archive.write(path, f"zipped/{path.name}")
    count += min(100, len(mri))
    sources = [(p, "chest/deep") for p in chest] + [(p, "chest") for p in adults] + [(p, "other") for p in ct]
    sources += [(p, "mri") for p in mri[100:]]
    for index, (path, where) in enumerate(sources[: n_total - count]):
        shutil.copyfile(path, folder / where / f"{index:05d}{path.suffix}")
    return folder


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def local_rows(folder: Path) -> dict[str, dict[str, str]]:
    from core.models.scan_model import ScanModel
    from core.tasks.batch import AUTO_MODELS, write_csv

    gate = ScanModel.load("gate")
    models = {kind: ScanModel.load(name) for kind, name in AUTO_MODELS.items()}
    lite_forward([gate, *models.values()])  # as the local CLI runs them by default (--forward tflite)
    buffer = io.StringIO()
    write_csv(predict_files(expand([folder]), models, progress=False, gate=gate), buffer)
    return {row["file"]: row for row in csv.DictReader(io.StringIO(buffer.getvalue()))}


def test_ray_rows_equal_the_local_clis_on_a_2000_image_mixed_archive(tmp_path):
    folder = mixed_archive(tmp_path / "archive")
    items = list_items([folder])
    assert len(items) == 2000
    result = run_archive([folder], tmp_path / "out", workers=2, keep_names=True, log=lambda _: None)
    assert result.written == 2000 and result.errors >= 3
    ray_rows = {row["file"]: row for row in read_csv(result.csv)}
    local = local_rows(folder)
    assert ray_rows.keys() == local.keys()
    kinds = {row["gate"].split(" ")[0] for row in local.values() if row["gate"]}
    assert {"chest", "brain", "refused"} <= kinds
    for name, expected in local.items():
        got = ray_rows[name]
        for column in ("modality", "gate", "model", "label", "flags", "error"):
            assert got[column] == expected[column], (name, column)
        for column in (c for c in expected if c.startswith("p_")):
            if expected[column]:
                assert abs(float(got[column]) - float(expected[column])) <= 1e-5, (name, column)
            else:
                assert got[column] == ""
    table = pq.read_table(result.parquet)
    assert table.num_rows == 2000 and "sha256" in table.column_names


def test_a_rerun_resumes_and_broken_files_become_error_rows(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    chest = sorted(data_path("chest_xray", "test", "NORMAL").glob("*.jpeg"))[:12]
    for path in chest[:8]:
        shutil.copyfile(path, folder / path.name)
    (folder / "truncated.jpeg").write_bytes(chest[9].read_bytes()[:300])
    out = tmp_path / "out"
    first = run_archive([folder], out, task="pneumonia", workers=1, log=lambda _: None)
    assert first.written == 9 and first.errors == 1
    assert next(r for r in read_csv(first.csv) if r["error"])["file"].endswith("truncated.jpeg")
    for path in chest[8:12]:
        shutil.copyfile(path, folder / path.name)
    shutil.copyfile(chest[0], folder / "same-content-new-name.jpeg")
    second = run_archive([folder], out, task="pneumonia", workers=1, log=lambda _: None)
    assert second.written == 4 and second.skipped_done == 10  # keyed by content: the renamed copy is done
    assert len(done_hashes(out)) == 13


def test_identifier_like_names_and_patient_fields_stay_out_unless_asked(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    dicoms = sorted(data_path("rsna_sample").rglob("*.dcm"))[:2]
    for path in dicoms:
        shutil.copyfile(path, folder / path.name)  # RSNA file names are the PatientID
    hidden = run_archive([folder], tmp_path / "hidden", task="pneumonia", workers=1, log=lambda _: None)
    text = Path(hidden.csv).read_text()
    for path in dicoms:
        assert path.stem not in text
    assert all(row["file"].startswith("file ") for row in read_csv(hidden.csv))
    kept = run_archive([folder], tmp_path / "kept", task="pneumonia", workers=1, keep_names=True, log=lambda _: None)
    assert {Path(row["file"]).name for row in read_csv(kept.csv)} == {p.name for p in dicoms}


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_ctrl_c_or_kill_leaves_readable_partial_output_and_a_rerun_finishes(tmp_path, stop):
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted(data_path("chest_xray", "test").rglob("*.jpeg")):
        shutil.copyfile(path, folder / path.name)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "core.predict", "--engine", "ray", str(folder), "--out", str(out),
               "--task", "pneumonia", "--batch-size", "8", "--workers", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A run started in the background (`cmd &`, nohup) inherits SIGINT as ignored, and Python then never raises
    # KeyboardInterrupt: give the child the default disposition, as a terminal's Ctrl-C would find it.
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        parts = list(out.glob("part-*.csv"))
        if parts and len(parts[0].read_text().splitlines()) > 20:
            break
        time.sleep(0.5)
    process.send_signal(stop)
    process.wait(timeout=120)
    partial = list(out.glob("part-*.parquet"))
    assert len(partial) == 1
    rows = pq.read_table(partial[0]).num_rows
    total = len(list(folder.iterdir()))
    assert 0 < rows < total, rows
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    contents = {hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}
    assert done_hashes(out) == contents  # every content once (the test set holds a few byte-identical images)
