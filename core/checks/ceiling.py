"""What the best threshold could have done on the test set itself: ``python -m core.checks.ceiling MODEL...``.

A model's test figures are read at the threshold chosen on validation. When they miss a target, the question is
whether another threshold would have met it, or whether the network ranks the test images too poorly for any
threshold to. This check answers it from the ROC curve that `core.evaluate` recorded: at every threshold, the best
accuracy, the best sensitivity at the target specificity, the best specificity at the target sensitivity, and
whether one threshold meets both targets. It is read on the test set after every choice was made and chooses
nothing; `--update-card` writes it into the card as `findings["test_ceiling"]`, for the Model cards page.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.models.cards import WEIGHTS_DIR, ModelCard

#: `binary_metrics` keeps every vertex of the curve up to this many points, and an even sample beyond.
ROC_POINTS_KEPT = 101


def threshold_ceiling(test: dict[str, Any], min_sensitivity: float, min_specificity: float) -> dict[str, Any]:
    """The best that any one threshold reaches on the curve recorded in `test` (a binary evaluation's figures):
    exact when the curve was kept whole, a lower bound when it was sampled."""
    roc = test.get("roc")
    if not roc:
        raise ValueError("no ROC curve recorded: evaluate a two-class model first (python -m core.evaluate)")
    (tn, fp), (fn, tp) = test["confusion_matrix"]
    negatives, positives = tn + fp, fn + tp
    fpr, tpr = np.asarray(roc["fpr"], dtype=float), np.asarray(roc["tpr"], dtype=float)
    specificity = 1 - fpr
    accuracy = (tpr * positives + specificity * negatives) / (positives + negatives)
    best = int(np.argmax(accuracy))
    meets_both = (tpr >= min_sensitivity) & (specificity >= min_specificity)
    at_spec = tpr[specificity >= min_specificity]
    at_sens = specificity[tpr >= min_sensitivity]
    return {
        "best_accuracy": round(float(accuracy[best]), 4),
        "its_sensitivity": round(float(tpr[best]), 4),
        "its_specificity": round(float(specificity[best]), 4),
        "target_sensitivity": min_sensitivity,
        "target_specificity": min_specificity,
        "best_sensitivity_at_target_specificity": round(float(at_spec.max()), 4) if at_spec.size else None,
        "best_specificity_at_target_sensitivity": round(float(at_sens.max()), 4) if at_sens.size else None,
        "a_threshold_meets_both": bool(meets_both.any()),
        "exact": len(fpr) < ROC_POINTS_KEPT,
        "read_on": "the test set itself, after every choice was made; it chose nothing",
    }


def ceiling_sentence(ceiling: dict[str, Any]) -> str:
    """One line for the Model cards page and the README."""
    both = "one threshold would meet" if ceiling["a_threshold_meets_both"] else "no threshold meets"
    bound = "" if ceiling["exact"] else " (at least; the curve was sampled)"
    return (
        f"Even a threshold picked on the test set itself reaches at most {ceiling['best_accuracy']:.1%} accuracy"
        f"{bound}; at {ceiling['target_specificity']:.0%} specificity the sensitivity is at most "
        f"{ceiling['best_sensitivity_at_target_specificity']:.1%}"
        f", so {both} both {ceiling['target_sensitivity']:.0%} sensitivity and "
        f"{ceiling['target_specificity']:.0%} specificity. Read after every choice was made; it chose nothing."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("models", nargs="+", help="names of two-class models evaluated on their test set")
    parser.add_argument("--sensitivity", type=float, default=0.94, help="target sensitivity (issue 14: 0.94)")
    parser.add_argument("--specificity", type=float, default=0.91, help="target specificity (issue 14: 0.91)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--update-card", action="store_true", help="write findings['test_ceiling'] into each card")
    args = parser.parse_args(argv)
    for name in args.models:
        card = ModelCard.load(args.weights / f"{name}.json")
        ceiling = threshold_ceiling(card.metrics.get("test", {}), args.sensitivity, args.specificity)
        print(f"{name}: {ceiling_sentence(ceiling)}")
        if args.update_card:
            card.findings["test_ceiling"] = ceiling
            card.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
