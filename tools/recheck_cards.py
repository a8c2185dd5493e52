"""Rerun each deployed model's recorded test command and compare its figures with the card's.

``python tools/recheck_cards.py [--out runs/recheck] [--models pneumonia covid ...]``

For a refactor: the card holds the command that wrote its test figures (`metrics.test.command`); this runs that
command with the current code, writing to `--out` (never into weights/), and prints each figure before and after.
Exit status 1 when any figure differs by more than `--tolerance`.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEPLOYED = ("pneumonia", "pneumonia-type", "covid", "mri-segmentation", "mri-tumour", "ct-infection", "ct-lungs",
            "gate")  # fmt: skip
FIGURES = ("accuracy", "sensitivity", "specificity", "auc", "macro_f1", "auc_bacterial_vs_viral", "dice_mean",
           "dice_median", "volume_mape", "infection_inside_lungs", "share_error_pp_mean",
           "false_rejection_rate_all_medical")  # fmt: skip


def figures(result: dict) -> dict[str, float]:
    """The headline figures of one evaluation JSON (nested ones flattened with a dot)."""
    found = {key: float(result[key]) for key in FIGURES if isinstance(result.get(key), (int, float))}
    if isinstance(result.get("other"), dict):
        found["other.rejection_rate"] = float(result["other"]["rejection_rate"])
    if isinstance(result.get("decision_rule"), dict):
        found["decision_rule.accuracy"] = float(result["decision_rule"]["accuracy"])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "recheck")
    parser.add_argument("--models", nargs="+", default=list(DEPLOYED))
    parser.add_argument("--tolerance", type=float, default=1e-9)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    differs = False
    for name in args.models:
        card = json.loads((REPO / "weights" / f"{name}.json").read_text())
        test = card["metrics"]["test"]
        command = shlex.split(test["command"])
        out = args.out / f"{name}.json"
        command[command.index("--out") + 1] = str(out)
        subprocess.run([sys.executable, *command[1:]], cwd=REPO, check=True, capture_output=True)
        before, after = figures(test), figures(json.loads(out.read_text()))
        for key, value in before.items():
            moved = abs(after.get(key, float("nan")) - value) > args.tolerance or key not in after
            differs |= moved
            now = after.get(key, float("nan"))
            print(f"{name:17s} {key:34s} {value:.4f} -> {now:.4f}{'  DIFFERS' if moved else ''}")
    return 1 if differs else 0


if __name__ == "__main__":
    raise SystemExit(main())
