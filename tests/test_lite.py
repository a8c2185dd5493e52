"""The TensorFlow Lite forward pass of the batch paths: same answers as TensorFlow, any batch size."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from core.cli import predict
from core.models.scan_model import ScanModel
from tests.helpers import make_model, png_bytes, synthetic_chest


def test_lite_gives_the_keras_networks_logits_for_any_batch(tmp_path):
    model = ScanModel.load(make_model(tmp_path))
    rng = np.random.default_rng(0)
    batches = [rng.random((n, 32, 32, 1), dtype=np.float32) for n in (5, 1, 5, 17)]
    expected = [model.logits(batch) for batch in batches]
    assert model.engine == "tensorflow" and model.use_lite(threads=1) and model.engine == "tflite"
    for batch, keras_logits in zip(batches, expected, strict=True):
        lite_logits = model.logits(batch)
        assert lite_logits.shape == keras_logits.shape
        np.testing.assert_allclose(lite_logits, keras_logits, atol=1e-4)
    assert not np.allclose(expected[0], expected[0][::-1])  # the images differ, so a mix-up would show


def test_the_batch_cli_answers_alike_with_either_forward(tmp_path, tiny_weights):
    folder = tmp_path / "studies"
    folder.mkdir()
    for index in range(3):
        (folder / f"{index}.png").write_bytes(png_bytes(synthetic_chest(64, seed=index)))
    tables = {}
    for forward in ("tflite", "tensorflow"):
        out = tmp_path / f"{forward}.csv"
        args = [str(folder), "--task", "pneumonia", "--weights", str(tiny_weights), "--csv", str(out)]
        assert predict.main([*args, "--forward", forward]) == 0
        tables[forward] = {row["file"]: row for row in csv.DictReader(out.open())}
    assert tables["tflite"].keys() == tables["tensorflow"].keys() and len(tables["tflite"]) == 3
    for name, row in tables["tflite"].items():
        assert float(row["p_PNEUMONIA"]) == pytest.approx(float(tables["tensorflow"][name]["p_PNEUMONIA"]), abs=1e-4)
