"""Deploying a trained variant: ``python -m core.checks.deploy covid-scratch covid-finetuned``.

Of the candidates (variants of one task, e.g. trained from scratch and fine-tuned from the chest
backbone, or runs of one start with other seeds, named by the path of their card), the one with the
best *validation* score (AUC for two classes, macro-F1 otherwise; a tie goes to the first listed) is
copied to the task's name (``covid.keras`` + ``covid.json``), which is what the app and the
evaluation CLI load. The test set plays no part in the choice. The variants keep their own cards
(marked not deployed) for the comparison table on the Model card page.

With ``--by-start-mean TRAINING_FOLDER``, the candidates are runs of two or more starts (seeds of each): the start
whose runs have the higher mean validation score wins, and the mean of its runs (one network, its temperature and
threshold fitted on the same validation patients) becomes the task's model.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from core.models.cards import WEIGHTS_DIR, ModelCard, remove_stale_members, validation_key


def validation_score(card: ModelCard) -> float:
    validation = card.metrics.get("validation", {})
    key = validation_key(card)
    if validation.get(key) is None:
        raise SystemExit(f"{card.name} has no validation {key} in its card")
    return float(validation[key])


def candidate_card(candidate: str, weights_dir: Path = WEIGHTS_DIR) -> ModelCard:
    """A candidate by name (its card in `weights_dir`) or by the path of its card (a run folder's `NAME.json`)."""
    path = Path(candidate) if candidate.endswith(".json") else Path(weights_dir) / f"{candidate}.json"
    if not path.exists():
        raise SystemExit(f"no card {path}")
    return ModelCard.load(path)


def candidates_of_one_task(candidates: Sequence[str], weights_dir: Path = WEIGHTS_DIR) -> tuple[list[ModelCard], str]:
    """The candidates' cards (`candidate_card`) and the one task they share."""
    cards = [candidate_card(candidate, weights_dir) for candidate in candidates]
    tasks = {card.task for card in cards}
    if len(tasks) != 1:
        raise SystemExit(f"candidates must share one task, got {sorted(tasks)}")
    return cards, tasks.pop()


def deploy(candidates: Sequence[str], weights_dir: Path = WEIGHTS_DIR) -> ModelCard:
    cards, task = candidates_of_one_task(candidates, weights_dir)
    names = [card.name for card in cards]
    if len(set(names)) != len(names):
        raise SystemExit(f"candidates need distinct names, got {names}")
    if any(card.members for card in cards):
        raise SystemExit("an ensemble cannot be deployed here (its member files stay behind)")
    scores = {card.name: validation_score(card) for card in cards}
    best = max(cards, key=lambda card: scores[card.name])  # a tie: the first listed
    for card in cards:
        if card.name != task:
            card.deployed = False
            card.save()
    deployed = ModelCard.from_dict(best.to_dict())
    target = Path(weights_dir) / f"{task}.keras"
    if best.weights_path.resolve() != target.resolve():
        shutil.copyfile(best.weights_path, target)
    deployed.name, deployed.weights, deployed.deployed = task, f"{task}.keras", True
    metric = "AUC" if len(best.classes) == 2 else "macro-F1"
    deployed.training = {
        **best.training,
        "deployed_from": best.name,
        "deployed_from_card": str(best.path),
        "selection": f"best validation {metric} among "
        + ", ".join(f"{name} {score:.4f}" for name, score in scores.items())
        + " (the test set played no part)",
    }
    deployed.save(Path(weights_dir) / f"{task}.json")
    remove_stale_members(deployed, Path(weights_dir))  # one network replacing an ensemble: its other files go
    print(f"deployed {best.name} as {task}: " + deployed.training["selection"])
    return deployed


def start_scores(cards: Sequence[ModelCard]) -> dict[str, list[float]]:
    """The runs' validation scores (AUC for two classes, macro-F1 otherwise) by start (`ModelCard.variant`)."""
    scores: dict[str, list[float]] = {}
    for card in cards:
        scores.setdefault(card.variant, []).append(validation_score(card))
    return scores


def choose_start(scores: dict[str, list[float]], in_use: str = "") -> str:
    """The start whose runs have the higher mean score, the means compared at four decimals (as logged, so float
    rounding never breaks a tie); a tie keeps the start `in_use`, else goes to the start listed first."""
    means = {variant: round(sum(runs) / len(runs), 4) for variant, runs in scores.items()}
    best = max(means.values())
    tied = [variant for variant, mean in means.items() if mean == best]
    return in_use if in_use in tied else tied[0]


def deploy_best_start_mean(
    candidates: Sequence[str], data_dir: Path, weights_dir: Path = WEIGHTS_DIR, log: Callable[[str], None] = print
) -> ModelCard:
    """Of runs of one task from two or more starts (two or more runs each, by card path or name), the start whose
    runs have the higher *mean* validation score wins (`choose_start`), and the mean of its runs' logits
    (`core.training.ensemble`) becomes the task's model. The test set plays no part. A speed condition that a rule
    may add (the README's: the Prediction page under 150 ms p50) is checked apart, with `python -m core.bench`."""
    from core.models.cards import STARTS
    from core.training.ensemble import average_classifiers

    cards, task = candidates_of_one_task(candidates, weights_dir)
    splits = {(card.data.get("split"), card.data.get("n_validation")) for card in cards}
    if len(splits) != 1:
        raise SystemExit(f"the runs were validated on different patients: {sorted(map(str, splits))}")
    scores = start_scores(cards)
    if len(scores) < 2 or min(len(runs) for runs in scores.values()) < 2:
        counts = {variant: len(runs) for variant, runs in scores.items()}
        raise SystemExit(f"give two or more runs of each of two or more starts, got {counts}")
    in_use_card = Path(weights_dir) / f"{task}.json"
    winner = choose_start(scores, ModelCard.load(in_use_card).variant if in_use_card.exists() else "")
    metric = "AUC" if validation_key(cards[0]) == "auc" else "macro-F1"
    by_start = "; ".join(
        f"{STARTS.get(variant, (variant,))[0]} {sum(runs) / len(runs):.4f} (mean of "
        + ", ".join(f"{card.name} {validation_score(card):.4f}" for card in cards if card.variant == variant)
        + ")"
        for variant, runs in scores.items()
    )
    selection = (
        f"the start with the higher mean validation {metric} over its runs ({by_start}); its runs' logits averaged "
        "(the test set played no part)"
    )
    log(f"{task}: {selection}")
    ensemble = average_classifiers([card for card in cards if card.variant == winner], data_dir, weights_dir, task,
                                   selection, log)  # fmt: skip
    ensemble.deployed = True
    ensemble.training["deployed_from"] = [card.name for card in cards if card.variant == winner]
    ensemble.save()
    return ensemble


def transfer_sentence(rows: Sequence[dict]) -> str:
    """What the comparison of starts (ImageNet, chest backbone, scratch) of one task found, in one sentence."""
    from core.models.cards import STARTS

    if len(rows) < 2:
        return ""
    key, label, fmt = (
        ("test_auc", "AUC", "{:.3f}") if any(r.get("test_auc") is not None for r in rows)
        else ("test_macro_f1", "macro-F1", "{:.3f}")
    )  # fmt: skip
    scored = [row for row in rows if row.get(key) is not None]
    if len(scored) < 2:
        return ""
    best = max(scored, key=lambda r: r[key])
    deployed = next((r for r in rows if r["deployed"]), None)
    one_run_each = len({r["variant"] for r in scored}) == len(scored)

    def start(row: dict) -> str:
        return f"{STARTS[row['variant']][0]} ({STARTS[row['variant']][1]})"

    def shown(row: dict) -> str:  # two rows of one start: say which run (or mean of runs) each is, and which is in use
        if one_run_each:
            return start(row)
        which = f" (mean of {row['networks']} runs)" if row.get("networks", 1) > 1 else f" (seed {row.get('seed', 0)})"
        return start(row) + which + (" in use" if row is deployed else "")

    parts = [f"{shown(r)} {fmt.format(r[key])}" for r in scored]
    mean_in_use = deployed is not None and deployed.get("networks", 1) > 1
    how = "by the mean validation score of its runs" if mean_in_use else "on validation"
    chosen = f"; in use: {start(deployed)}, chosen {how}" if deployed is not None else ""
    runs = "one run each" if one_run_each else "runs of one start listed apart"
    return f"Held-out test {label} by start: {', '.join(parts)}. Best on test: {shown(best)}{chosen} ({runs})."


def write_transfer_findings(weights_dir: Path = WEIGHTS_DIR) -> None:
    """Write each task's comparison of starts into the deployed card of that task."""
    from core.models.cards import list_cards, transfer_table

    cards = list_cards(weights_dir)
    rows = transfer_table(cards)
    for task in sorted({row["task"] for row in rows}):
        sentence = transfer_sentence([row for row in rows if row["task"] == task])
        if sentence and task in cards:
            cards[task].findings["transfer"] = sentence
            cards[task].save()
            print(f"{task}: {sentence}")


TRANSFER_HEADER = (
    "| task (test set) | start (network) | in use | epochs | validation | test accuracy | test AUC / macro-F1 "
    "| sensitivity / specificity | bacterial vs viral AUC |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
)


def transfer_markdown(rows: list[dict[str, Any]], cards: dict[str, ModelCard]) -> str:
    """The transfer-learning table as the README shows it, from the cards' figures (`--readme-table`): a start
    run more than once for a task names each row's seed; a figure not measured yet shows as "–"."""

    def shown(value: float | None, fmt: str, interval: list[float] | None = None) -> str:
        if value is None:
            return "–"
        return fmt.format(value) + (f" ({fmt.format(interval[0])}–{fmt.format(interval[1])})" if interval else "")

    lines = [TRANSFER_HEADER]
    for row in rows:
        card, ci95 = cards[row["model"]], row["test_ci95"]
        start = f"{row['start']} ({row['network']})"
        seeds = [str(member.get("seed")) for member in card.training.get("members", [])] if card.members else []
        if seeds:
            start += f", mean of seeds {' / '.join(seeds)}"
        elif sum(other["task"] == row["task"] and other["variant"] == row["variant"] for other in rows) > 1:
            start += f", seed {card.training.get('seed', 0)}"
        n = card.metrics.get("test", {}).get("n", "–")
        if row["validation_macro_f1"] is not None or row["test_macro_f1"] is not None:
            validation = shown(row["validation_macro_f1"], "macro-F1 {:.3f}")
            score = shown(row["test_macro_f1"], "{:.3f}", ci95.get("macro_f1"))
            score = score if score == "–" else "macro-F1 " + score
        else:
            validation = shown(row["validation_auc"], "AUC {:.4f}")
            score = shown(row["test_auc"], "{:.3f}", ci95.get("auc"))
            score = score if score == "–" else "AUC " + score
        sensitivity, specificity = row["test_sensitivity"], row["test_specificity"]
        rates = "–" if sensitivity is None or specificity is None else f"{sensitivity:.1%} / {specificity:.1%}"
        subtypes = row["test_auc_bacterial_vs_viral"]
        cells = [f"{row['task']} ({n})", start, "**yes**" if row["deployed"] else "", str(row["epochs"] or "–"),
                 validation, shown(row["test_accuracy"], "{:.1%}", ci95.get("accuracy")), score, rates,
                 "–" if subtypes is None else f"{subtypes:.3f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("candidates", nargs="*",
                        help="models of one task: names (cards in --weights) or paths of cards (NAME.json, e.g. a seed "
                             "run's folder)")  # fmt: skip
    parser.add_argument(
        "--transfer-findings",
        action="store_true",
        help="write the scratch vs fine-tuned finding (test figures) into each deployed card",
    )
    parser.add_argument("--readme-table", action="store_true",
                        help="print the README's transfer-learning table (Markdown) from the cards")  # fmt: skip
    parser.add_argument("--by-start-mean", type=Path, default=None, metavar="TRAINING_DATA",
                        help="deploy the mean of the runs of the start with the best mean validation score "
                             "(candidates: runs of two or more starts; the value: their training folder)")  # fmt: skip
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR)
    args = parser.parse_args(argv)
    if args.candidates and args.by_start_mean is not None:
        deploy_best_start_mean(args.candidates, args.by_start_mean, args.weights)
    elif args.candidates:
        deploy(args.candidates, args.weights)
    if args.transfer_findings:
        write_transfer_findings(args.weights)
    if args.readme_table:
        from core.models.cards import list_cards, transfer_table

        cards = list_cards(args.weights)
        print(transfer_markdown(transfer_table(cards), cards))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
