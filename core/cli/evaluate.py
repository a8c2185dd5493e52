"""Evaluation CLI: ``python -m core.evaluate TASK --data DIR --out FILE.json [--update-card]`` for every task of
the table in `core.tasks.registry` that has an evaluation. The committed weights and the thresholds in their card
are used as they are; nothing is tuned here.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from core.checks.evaluation import is_training_folder
from core.models.cards import WEIGHTS_DIR
from core.models.scan_model import ScanModel
from core.tasks.registry import TASKS, NoLabelledDataError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.evaluate", description=__doc__)
    parser.add_argument("task", choices=[name for name, entry in TASKS.items() if entry.evaluate is not None])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True, help="where to write the metrics JSON")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--model", default=None, help="a model name other than the task's (e.g. covid-scratch)")
    parser.add_argument("--split-name", default="test", help="name of this data in the card's metrics")
    parser.add_argument(
        "--split",
        choices=["all", "test", "validation"],
        default=None,
        help="MRI: all patients under --data (default; recorded as split 'all' unless --split-name says otherwise), "
        "or only the card's held-out test / validation patients; "
        "covid: the seeded held-out test part (the default only when --data is the model's training folder) "
        "or all images (the default for any other folder)",
    )
    parser.add_argument("--update-card", action="store_true", help="also write the metrics into the model card")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")

    model = ScanModel.load(args.model or args.task, args.weights)
    if args.split is None:
        args.split = "test" if args.task == "covid" and is_training_folder(model, args.data) else "all"
        what = "the held-out part of the training folder" if args.split == "test" else "every image in the folder"
        print(f"split: {args.split} ({what})")
    try:
        metrics, args.split_name = TASKS[args.task].evaluate(model, args)
    except NoLabelledDataError as error:
        parser.error(str(error))
    result = {
        "model": model.name,
        "weights_sha256": model.card.sha256,
        **({"members_sha256": [m.get("sha256", "") for m in model.card.members]} if model.card.members else {}),
        "data": str(args.data),
        "split": args.split_name,
        "command": f"python -m core.evaluate {args.task} --data {args.data} --out {args.out}"
        + (f" --model {args.model}" if args.model else "")
        + (f" --split {args.split}" if args.split != "all" else ""),
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
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
