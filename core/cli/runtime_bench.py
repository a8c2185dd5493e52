"""Compare TensorFlow runtime settings side by side: ``python -m core.cli.runtime_bench --out weights/runtime.json``.

For each option in `core.runtime.RUNTIME_OPTIONS`, in fresh processes with that environment:
1. does the oneDNN repro (`core.runtime.onednn_repro`) survive, and does one Grad-CAM of every committed
   model survive (each in its own process, so a crash is recorded, not fatal);
2. speed: pneumonia batch images/s (prepared 160x160 inputs, batches of 64), one image's predict, one image's
   predict + Grad-CAM, one MRI slice's mask (p50 over repeats);
3. every committed model's probabilities on fixed seeded inputs, compared with "oneDNN off" (TensorFlow's
   plain Eigen kernels) as the reference: the largest absolute difference over all models.
The setting kept in `core.runtime` is the fastest option that survives.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.runtime import RUNTIME_OPTIONS, cpu_model, has_avx512

REPO = Path(__file__).resolve().parents[2]


def _run(code: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, "-c", code], env=full_env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )


def survives_repro(env: dict[str, str]) -> tuple[bool, int]:
    done = _run("import core.runtime as r; r.onednn_repro()", env)
    return done.returncode == 0, done.returncode


GRADCAM_ONE = """
import numpy as np, core
from core.models.scan_model import ScanModel
from core.explain.gradcam import heatmap
model = ScanModel.load({name!r})
if model.card.task == "segmentation":
    model.segment(np.random.default_rng(0).random((256, 256, 3), dtype=np.float32))
else:
    heatmap(model, np.random.default_rng(0).random((256, 256, 3), dtype=np.float32))
"""


def survives_gradcams(env: dict[str, str]) -> dict[str, int]:
    """Exit code of one Grad-CAM (or mask, for segmenters) per committed model, each in its own process."""
    from core.models.scan_model import available_models

    return {name: _run(GRADCAM_ONE.format(name=name), env).returncode for name in available_models()}


TRAIN_STEPS = """
import numpy as np, core, keras
from core.models.networks import build_classifier, build_resunet
rng = np.random.default_rng(0)
for widths, size, batch in (((4, 8, 8, 16), 64, 4), ((16, 32, 64, 128, 256), 128, 8)):
    net = build_resunet((size, size, 3), widths)
    net.compile(optimizer="adam", loss="binary_crossentropy")
    x = rng.random((batch * 3, size, size, 3), dtype=np.float32)
    net.fit(x, (x[..., :1] > 0.5).astype("float32"), batch_size=batch, epochs=2, verbose=0)
net = build_classifier((160, 160, 1), 2)
net.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
net.fit(rng.random((32, 160, 160, 1), dtype=np.float32), rng.integers(0, 2, 32), batch_size=16, epochs=1, verbose=0)
"""


def survives_training(env: dict[str, str]) -> int:
    """Exit code of a few training steps of the ResUNet (the test suite's small one and the real one) and the CNN."""
    return _run(TRAIN_STEPS, env).returncode


PROBE = """
import json, time, sys, numpy as np, core
from core.models.scan_model import ScanModel, available_models
from core.explain.gradcam import heatmap
rng = np.random.default_rng(0)
out = {}
probabilities = {}
for name, card in available_models().items():
    model = ScanModel.load(card)
    shape = (8, card.input.height, card.input.width, card.input.channels)
    batch = np.random.default_rng(1).random(shape, dtype=np.float32)
    if card.task == "segmentation":
        probabilities[name] = model.logits(batch).reshape(8, -1)[:, ::97].tolist()
    else:
        probabilities[name] = model.probabilities(batch).tolist()
out["probabilities"] = probabilities
pneumonia = ScanModel.load("pneumonia")
batch = rng.random((64, 160, 160, 1), dtype=np.float32)
for _ in range(3):
    pneumonia.logits(batch)
start = time.perf_counter(); rounds = 8
for _ in range(rounds):
    pneumonia.logits(batch)
out["batch_images_per_s"] = round(64 * rounds / (time.perf_counter() - start), 1)
image = rng.random((224, 224), dtype=np.float32)
def p50(action, repeats={repeats}):
    for _ in range(3):
        action()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter(); action(); samples.append(time.perf_counter() - start)
    return round(float(np.median(samples)) * 1000, 2)
out["predict_ms"] = p50(lambda: pneumonia.predict(image))
out["predict_gradcam_ms"] = p50(lambda: (pneumonia.predict(image), heatmap(pneumonia, image)))
segmenter = ScanModel.load("mri-segmentation")
slice_ = rng.random((256, 256, 3), dtype=np.float32)
out["mri_mask_ms"] = p50(lambda: segmenter.segment(slice_))
print("PROBE" + json.dumps(out))
"""


def probe(env: dict[str, str], repeats: int) -> dict[str, Any]:
    done = _run(PROBE.replace("{repeats}", str(repeats)), env)
    for line in done.stdout.splitlines():
        if line.startswith("PROBE"):
            return json.loads(line[5:])
    return {"error": f"exit code {done.returncode}"}


def compare(options: dict[str, dict[str, Any]], reference: str) -> None:
    """Add `max_abs_diff_vs_reference`: the largest probability difference to the reference, over all models."""
    base = options[reference].get("probabilities")
    for row in options.values():
        mine = row.get("probabilities")
        if base is None or mine is None:
            row["max_abs_diff_vs_reference"] = None
            continue
        row["max_abs_diff_vs_reference"] = float(
            max(np.abs(np.asarray(mine[name]) - np.asarray(base[name])).max() for name in base)
        )


def _verdict(survived: bool | None) -> str:
    return "-" if survived is None else ("ok" if survived else "CRASH")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.cli.runtime_bench", description=__doc__)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, Any]] = {}
    for label, env in RUNTIME_OPTIONS.items():
        started = time.perf_counter()
        survived, code = survives_repro(env)
        # An option that fails the repro is unsafe already: its Grad-CAM and training checks are not run.
        cams = survives_gradcams(env) if survived else {}
        training = survives_training(env) if survived else None
        row: dict[str, Any] = {
            "environment": env,
            "repro_survives": survived,
            "repro_exit_code": code,
            "gradcam_exit_codes": cams,
            "all_gradcams_survive": bool(cams) and all(value == 0 for value in cams.values()),
            "training_exit_code": training,
            **probe(env, args.repeats),
        }
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows[label] = row
        print(f"{label}: {json.dumps({k: v for k, v in row.items() if k != 'probabilities'})}", flush=True)
    compare(rows, "oneDNN off")
    safe = [
        label
        for label, row in rows.items()
        if row["repro_survives"] and row["all_gradcams_survive"] and row["training_exit_code"] == 0
    ]
    fastest = max(safe, key=lambda label: rows[label].get("batch_images_per_s", 0)) if safe else None
    result = {
        "cpu": cpu_model(),
        "avx512": has_avx512(),
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "fastest_safe_option": fastest,
        "options": {label: {k: v for k, v in row.items() if k != "probabilities"} for label, row in rows.items()},
    }
    header = f"{'option':<42}{'repro':>8}{'CAMs':>6}{'train':>7}{'img/s':>8}{'pred ms':>9}{'+CAM ms':>9}{'MRI ms':>8}"
    print(f"\n{header}{'diff':>10}")
    for label, row in result["options"].items():
        diff = row.get("max_abs_diff_vs_reference")
        print(
            f"{label:<42}{'ok' if row['repro_survives'] else 'CRASH':>8}"
            f"{_verdict(row['all_gradcams_survive'] if row['gradcam_exit_codes'] else None):>6}"
            f"{_verdict(None if row['training_exit_code'] is None else row['training_exit_code'] == 0):>7}"
            f"{row.get('batch_images_per_s', '-')!s:>8}{row.get('predict_ms', '-')!s:>9}"
            f"{row.get('predict_gradcam_ms', '-')!s:>9}{row.get('mri_mask_ms', '-')!s:>8}"
            f"{'-' if diff is None else f'{diff:.1e}':>10}"
        )
    print(f"fastest option that survives: {fastest}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
