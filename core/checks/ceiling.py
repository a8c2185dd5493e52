"""What the best threshold could have done on the test set itself: ``python -m core.checks.ceiling MODEL...``.

A model's test figures are read at the threshold chosen on validation. When they miss a target, the question is
whether another threshold would have met it, or whether the network ranks the test images too poorly for any
threshold to. This check answers it from the ROC curve that `core.evaluate` recorded: at every threshold, the best
accuracy, the best sensitivity at the target specificity, the best specificity at the target sensitivity, and
whether one threshold meets both targets. It is hindsight: read on the test set after every choice was made, it
chooses nothing. `--update-card` writes it into the card as `findings["test_ceiling"]`; the Model cards page works
it out again from the card's test figures, so it cannot go stale there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.models.cards import WEIGHTS_DIR, ModelCard, ModelCardError

#: `binary_metrics` keeps every vertex of the curve up to this many points, and an even sample beyond.
ROC_POINTS_KEPT = 101

#: The targets per task (sensitivity, specificity): issue 14's, for the two-class chest questions.
TARGETS: dict[str, tuple[float, float]] = {"pneumonia": (0.94, 0.91), "covid": (0.95, 0.95)}


class CeilingError(ValueError):
    """The card has no curve this check can read (not a two-class model, not evaluated, or decided by a rule)."""


def threshold_ceiling(test: dict[str, Any], min_sensitivity: float, min_specificity: float) -> dict[str, Any]:
    """The best that any one threshold reaches on the curve recorded in `test` (a binary evaluation's figures).
    Exact when the curve was kept whole; when it was sampled, each figure is only what is at least reachable and
    whether a threshold meets both targets is unknown (None) unless the sample holds one."""
    roc, matrix = test.get("roc"), test.get("confusion_matrix")
    if not roc or not matrix:
        raise CeilingError("no ROC curve recorded: evaluate a two-class model first (python -m core.evaluate)")
    (tn, fp), (fn, tp) = matrix
    negatives, positives = tn + fp, fn + tp
    # whole counts again from the recorded (rounded) rates, so nothing is rounded twice
    true_pos = np.rint(np.asarray(roc["tpr"], dtype=float) * positives)
    true_neg = negatives - np.rint(np.asarray(roc["fpr"], dtype=float) * negatives)
    sensitivity, specificity = true_pos / positives, true_neg / negatives
    accuracy = (true_pos + true_neg) / (positives + negatives)
    best = int(np.argmax(accuracy))
    exact = len(true_pos) < ROC_POINTS_KEPT
    meets_both = bool(((sensitivity >= min_sensitivity) & (specificity >= min_specificity)).any())
    at_spec = sensitivity[specificity >= min_specificity]  # the curve starts at (0, 0): never empty
    at_sens = specificity[sensitivity >= min_sensitivity]  # and ends at (1, 1)
    return {
        "best_accuracy": round(float(accuracy[best]), 4),
        "its_sensitivity": round(float(sensitivity[best]), 4),
        "its_specificity": round(float(specificity[best]), 4),
        "target_sensitivity": min_sensitivity,
        "target_specificity": min_specificity,
        "best_sensitivity_at_target_specificity": round(float(at_spec.max()), 4),
        "best_specificity_at_target_sensitivity": round(float(at_sens.max()), 4),
        "a_threshold_meets_both": meets_both if exact or meets_both else None,
        "exact": exact,
        "accuracy_at_the_threshold_in_use": test.get("accuracy"),
        "read_on": "the test set itself, after every choice was made (hindsight); it chose nothing",
    }


def card_ceiling(card: ModelCard, targets: tuple[float, float] | None = None) -> dict[str, Any]:
    """`threshold_ceiling` of a card's test figures, at its task's targets (or `targets`)."""
    if card.decision_rule:
        raise CeilingError(f"{card.name} decides by a rule ({card.decision_rule.get('rule')}), not by one threshold")
    targets = targets or TARGETS.get(card.task)
    if targets is None:
        raise CeilingError(f"no targets for the task {card.task!r}: give --sensitivity and --specificity")
    return threshold_ceiling(card.metrics.get("test", {}), *targets)


def ceiling_sentence(ceiling: dict[str, Any]) -> str:
    """The finding in words, for the Model cards page: a hindsight check, not the model's performance."""
    sens, spec = ceiling["target_sensitivity"], ceiling["target_specificity"]
    most = "at most" if ceiling["exact"] else "at least (the recorded curve was sampled)"
    in_use = ceiling.get("accuracy_at_the_threshold_in_use")
    in_use_text = f" (the threshold chosen on validation gives {in_use:.1%})" if in_use is not None else ""
    verdict = {
        True: "so one threshold would have met both",
        False: "so no threshold meets both",
        None: "so whether one threshold meets both is not known from the sample",
    }[ceiling["a_threshold_meets_both"]]
    return (
        f"Hindsight, not the model's performance: even a threshold picked on the test set itself gives {most} "
        f"{ceiling['best_accuracy']:.1%} accuracy{in_use_text}, and at {spec:.0%} specificity {most} "
        f"{ceiling['best_sensitivity_at_target_specificity']:.1%} sensitivity; {verdict} of this project's targets, "
        f"{sens:.0%} sensitivity and {spec:.0%} specificity. Nothing was chosen from this."
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.ceiling", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("models", nargs="+", help="names of two-class models evaluated on their test set")
    parser.add_argument("--sensitivity", type=float, default=None, help="target sensitivity (default: the task's)")
    parser.add_argument("--specificity", type=float, default=None, help="target specificity (default: the task's)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    parser.add_argument("--update-card", action="store_true", help="write findings['test_ceiling'] into each card")
    args = parser.parse_args(argv)
    given = (args.sensitivity, args.specificity)
    if (given[0] is None) != (given[1] is None):
        parser.error("give both --sensitivity and --specificity, or neither (the task's targets)")
    for name in args.models:
        try:
            card = ModelCard.load(args.weights / f"{name}.json")
            ceiling = card_ceiling(card, None if given[0] is None else given)
        except (CeilingError, ModelCardError, OSError) as error:
            print(f"{name}: {error}", file=sys.stderr)
            return 2
        print(f"{name}: {ceiling_sentence(ceiling)}")
        if args.update_card:
            card.findings["test_ceiling"] = ceiling
            card.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
