"""Evaluation CLI: ``python -m core.evaluate pneumonia --data DIR --out FILE.json [--update-card]``.

DIR holds ``NORMAL/`` and ``PNEUMONIA/`` (any size, PNG/JPEG/DICOM). The committed weights and the
threshold in their card are used as they are; nothing is tuned here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.cards import WEIGHTS_DIR
from core.data import Sample, list_labelled, list_pneumonia_types
from core.loading import load_image
from core.metrics import binary_metrics, multiclass_metrics
from core.models import ScanModel, softmax

LISTERS = {
    "pneumonia": lambda root: list_labelled(root, ["NORMAL", "PNEUMONIA"]),
    "pneumonia-type": list_pneumonia_types,
}


def evaluate_classifier(
    model: ScanModel, samples: Sequence[Sample], batch_size: int = 32, progress: bool = True
) -> dict[str, Any]:
    """Metrics of `model` on labelled samples, plus decode-to-answer latency per image."""
    from tqdm import tqdm

    started = time.perf_counter()
    logits = []
    for start in tqdm(range(0, len(samples), batch_size), disable=not progress, desc="evaluating", unit="batch"):
        chunk = samples[start : start + batch_size]
        batch = np.stack([model.prepare(load_image(s.path.read_bytes(), s.path.name)) for s in chunk])
        logits.append(model.logits(batch))
    elapsed = time.perf_counter() - started
    probabilities = softmax(np.concatenate(logits), model.card.temperature)
    labels = np.array([s.label for s in samples])
    if len(model.classes) == 2 and model.card.positive_index is not None:
        metrics = binary_metrics(labels, probabilities[:, model.card.positive_index], model.card.threshold or 0.5)
    else:
        metrics = multiclass_metrics(labels, probabilities, model.classes)

    single = []
    for sample in samples[: min(20, len(samples))]:
        data = sample.path.read_bytes()
        tick = time.perf_counter()
        model.predict(load_image(data, sample.path.name))
        single.append(time.perf_counter() - tick)
    metrics["latency_ms_per_image_batched"] = 1000 * elapsed / max(len(samples), 1)
    metrics["latency_ms_single_image_median"] = 1000 * float(np.median(single)) if single else None
    metrics["n_patients"] = len({s.patient for s in samples})
    return metrics


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__)
    parser.add_argument("task", choices=sorted(LISTERS))
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the metrics JSON")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--split-name", default="test", help="name of this data in the card's metrics")
    parser.add_argument("--update-card", action="store_true", help="also write the metrics into the model card")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")

    model = ScanModel.load(args.task, args.weights)
    samples = LISTERS[args.task](args.data)
    if not samples:
        parser.error(f"no images found under {args.data}")
    metrics = evaluate_classifier(model, samples)
    result = {
        "model": model.name,
        "weights_sha256": model.card.sha256,
        "data": str(args.data),
        "split": args.split_name,
        "command": f"python -m core.evaluate {args.task} --data {args.data} --out {args.out}",
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores",
        **metrics,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    summary = {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)}
    print(json.dumps(summary, indent=2))
    if args.update_card:
        model.card.metrics[args.split_name] = result
        model.card.save()
        print(f"updated {model.card.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
