"""The preprocessing x model study: patient-grouped folds, the three families, summary and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.checks.study import StudyConfig, patient_folds, run_study, summarise
from core.data.chest import Sample
from core.models.study_networks import FAMILIES, build_family, scale_stack
from tests.helpers import make_chest_set


def test_folds_keep_each_patient_in_one_fold_and_use_every_fold():
    samples = [Sample(Path(f"{p}_{v}.png"), p % 2, f"patient{p}") for p in range(40) for v in range(1 + p % 3)]
    folds = patient_folds(samples, 5, seed=0)
    by_patient: dict[str, set[int]] = {}
    for sample, fold in zip(samples, folds, strict=True):
        by_patient.setdefault(sample.patient, set()).add(int(fold))
    assert all(len(f) == 1 for f in by_patient.values())
    assert set(folds.tolist()) == set(range(5))
    for fold in range(5):  # stratified: both classes in every held-out fold
        assert {s.label for s, f in zip(samples, folds, strict=True) if f == fold} == {0, 1}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_builds_and_gives_two_logits(family):
    model = build_family(family, 32)
    batch = np.random.default_rng(0).random((2, 32, 32)).astype(np.float32)
    inputs = scale_stack(batch) if family == "stack3d" else batch[..., None]
    assert model(inputs).shape == (2, 2)


def test_scale_stack_keeps_the_image_first_and_smooths_the_rest():
    batch = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    stack = scale_stack(batch)
    assert stack.shape == (3, 3, 16, 16, 1)
    np.testing.assert_array_equal(stack[:, 0, ..., 0], batch)
    assert stack[:, 2].std() < stack[:, 1].std() < stack[:, 0].std()


def test_summary_is_mean_and_sample_std_and_the_winner_needs_all_folds():
    runs = [
        {"preprocessing": "none", "family": "cnn", "fold": k, "auc": a, "accuracy": 0.8, "seconds": 1.0}
        for k, a in enumerate([0.9, 0.8])
    ] + [{"preprocessing": "clahe", "family": "cnn", "fold": 0, "auc": 0.99, "accuracy": 0.9, "seconds": 1.0}]
    summary = summarise(runs, folds=2)
    row = next(r for r in summary["table"] if r["preprocessing"] == "none")
    assert row["auc_mean"] == pytest.approx(0.85)
    assert row["auc_std"] == pytest.approx(np.std([0.9, 0.8], ddof=1))
    assert summary["winner"]["preprocessing"] == "none"  # clahe has only one of two folds
    assert summary["complete_pairs"] == 1


@pytest.mark.slow
def test_study_runs_writes_after_each_run_and_resumes(tmp_path):
    data = make_chest_set(tmp_path / "data", per_class=12)
    out = tmp_path / "study.json"
    config = StudyConfig(data=str(data), folds=2, size=32, epochs=1, batch_size=8,
                         preprocessings=("none", "clahe"), families=("cnn", "stack3d"))  # fmt: skip
    payload = run_study(config, out, log=lambda _: None, progress=False)
    assert len(payload["runs"]) == 2 * 2 * 2
    saved = json.loads(out.read_text())
    assert saved["summary"]["complete_pairs"] == 4
    for run in saved["runs"]:
        assert 0.0 <= run["auc"] <= 1.0 and run["n_test"] > 0

    # drop one run: resuming redoes that one only
    saved["runs"] = saved["runs"][:-1]
    out.write_text(json.dumps(saved))
    messages: list[str] = []
    resumed = run_study(config, out, log=messages.append, progress=False)
    assert len(resumed["runs"]) == 8 and any("resuming: 7 runs" in m for m in messages)

    other = StudyConfig(data=str(data), folds=3, size=32, epochs=1, preprocessings=("none",), families=("cnn",))
    with pytest.raises(SystemExit):
        run_study(other, out, log=lambda _: None, progress=False)


@pytest.mark.parametrize(("stride", "depth_padding"), [(1, "same"), (2, "same"), (1, "valid")])
def test_conv3d_written_with_2d_convolutions_equals_keras_conv3d(stride, depth_padding):
    import keras
    from keras import layers

    from core.models.study_networks import conv3d

    volume = np.random.default_rng(0).random((2, 3, 12, 12, 2)).astype(np.float32)
    inputs = keras.Input((3, 12, 12, 2))
    ours = keras.Model(inputs, conv3d(inputs, 4, stride=stride, depth_padding=depth_padding, name="c3"))
    kernel = np.random.default_rng(1).normal(size=(3, 3, 3, 2, 4)).astype(np.float32)  # (depth, h, w, in, out)
    ours.get_layer("c3").set_weights([kernel.transpose(1, 2, 0, 3, 4).reshape(3, 3, 6, 4)])
    reference = layers.Conv3D(4, 3, strides=(1, stride, stride), padding=depth_padding, use_bias=False)
    if depth_padding == "valid":  # valid in depth only: pad height and width by hand, drop the depth axis
        padded = np.pad(volume, ((0, 0), (0, 0), (1, 1), (1, 1), (0, 0)))
        reference.build(padded.shape)
        reference.set_weights([kernel])
        expected = reference(padded)[:, 0]
    else:
        reference.build(volume.shape)
        reference.set_weights([kernel])
        expected = reference(volume)
    np.testing.assert_allclose(ours(volume), expected, atol=1e-4)
