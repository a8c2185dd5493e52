"""How much of the transfer-learning comparison is the seed: ``python -m core.checks.seeds FOLDER... --out
weights/seeds.json``.

The comparison table (ImageNet start, our chest backbone, scratch) holds one trained run per start. Each start can
be retrained with other seeds on the same validation split (``python -m core.train TASK ... --name
TASK-VARIANT-sN --seed N --split-seed 0 --out FOLDER``) and evaluated on the test set as the committed run was
(``python -m core.evaluate TASK --model NAME --weights FOLDER --update-card``). This check groups the committed
variant cards and those runs by task and start, and writes each figure's mean and sample standard deviation.
It reports; nothing is chosen from it, and runs on another split than the committed one are left out (named).
`--keep weights/seeds.json` adds, run by run, the runs that an earlier output recorded and whose folders are gone
(their figures then come from that file; the group is marked `kept_from` and names them in `recorded_runs`).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.models.cards import STARTS, WEIGHTS_DIR, ModelCard, list_cards

#: The figures of a run that the spread is computed for (validation first, then the test set).
FIGURES: dict[str, tuple[str, str]] = {
    "validation_auc": ("validation", "auc"),
    "validation_macro_f1": ("validation", "macro_f1"),
    "test_accuracy": ("test", "accuracy"),
    "test_sensitivity": ("test", "sensitivity"),
    "test_specificity": ("test", "specificity"),
    "test_auc": ("test", "auc"),
    "test_macro_f1": ("test", "macro_f1"),
    "test_auc_bacterial_vs_viral": ("test", "auc_bacterial_vs_viral"),
}


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (None for one value) and the values themselves."""
    array = np.asarray(values, dtype=float)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else None,
            "values": [float(v) for v in array]}  # fmt: skip


def run_setting(card: ModelCard) -> tuple:
    """What must match for two runs to differ only in their seed: the split and its sizes, the network and its
    start, the optimiser (learning rate) and the batch size."""
    return (card.data.get("split"), card.data.get("n_train"), card.data.get("n_validation"), card.architecture,
            card.training.get("optimiser"), card.training.get("batch_size"))  # fmt: skip


def seed_groups(committed: dict[str, ModelCard], extra: Sequence[ModelCard]) -> dict[str, Any]:
    """Per task and start: the runs (committed variant first), their seeds and the spread of each figure."""
    groups: dict[tuple[str, str], list[ModelCard]] = {}
    for card in committed.values():  # each start's committed run (the deployed copy of one is not a run of its own)
        if card.variant in STARTS and not card.deployed:
            groups.setdefault((card.task, card.variant), []).append(card)
    seen = {(card.name, card.sha256) for runs in groups.values() for card in runs}
    left_out = []
    for card in extra:
        runs = groups.get((card.task, card.variant))
        copy = any(card.name == name or (card.sha256 and card.sha256 == digest) for name, digest in seen)
        if card.variant not in STARTS or card.name == card.task or copy:
            continue  # not a start, or a copy of a run already counted (the deployed copy, a folder given twice)
        if not runs or run_setting(card) != run_setting(runs[0]) or "test" not in card.metrics:
            left_out.append(card.name)
            continue
        seen.add((card.name, card.sha256))
        runs.append(card)
    out = []
    for (task, variant), runs in sorted(groups.items()):
        figures = {}
        for figure, (part, key) in FIGURES.items():
            values = [run.metrics.get(part, {}).get(key) for run in runs]
            if all(value is not None for value in values):
                figures[figure] = spread(values)
        out.append({"task": task, "variant": variant, "start": STARTS[variant][0], "network": STARTS[variant][1],
                    "runs": [run.name for run in runs], "seeds": [run.training.get("seed") for run in runs],
                    "n_runs": len(runs), "figures": figures})  # fmt: skip
    return {"groups": out, "left_out": left_out}


def keep_recorded(result: dict[str, Any], earlier: dict[str, Any], source: str) -> list[str]:
    """Add to `result`'s groups the runs that an `earlier` output of this check recorded and whose cards are gone (a
    run folder is not committed): run by run, with the figures that file holds for them; runs found now keep
    today's figures. A group gaining runs is marked `kept_from` (source, date, command) and lists them under
    `recorded_runs`; a start with no committed run now is not brought back. Returns a line per group changed."""
    found = {(group["task"], group["variant"]): group for group in result["groups"]}
    kept = []
    for old in earlier.get("groups", []):
        group = found.get((old["task"], old["variant"]))
        if group is None:
            continue  # the start has no committed run now: not brought back
        gone = [i for i, name in enumerate(old["runs"]) if name not in group["runs"]]
        if not gone:
            continue  # every recorded run is here now, with today's figures
        figures = {}
        for figure, now in group["figures"].items():
            recorded = old["figures"].get(figure, {}).get("values")
            if recorded is not None and len(recorded) == len(old["runs"]):
                figures[figure] = spread([*now["values"], *(recorded[i] for i in gone)])
        group.update(
            runs=[*group["runs"], *(old["runs"][i] for i in gone)],
            seeds=[*group["seeds"], *(old["seeds"][i] for i in gone)],
            n_runs=len(group["runs"]) + len(gone), figures=figures, recorded_runs=[old["runs"][i] for i in gone],
            kept_from=old.get("kept_from") or {"file": source, "date": earlier.get("date"),
                                                "command": earlier.get("command")},
        )  # fmt: skip
        kept.append(f"{group['task']} / {group['start']}: {', '.join(group['recorded_runs'])}")
    return kept


#: The README's seed tables: one for the two-class questions, one for normal / bacterial / viral.
MARKDOWN_COLUMNS: list[list[tuple[str, str, str]]] = [
    [("validation AUC", "validation_auc", "{:.4f}"), ("test accuracy", "test_accuracy", "%"),
     ("test AUC", "test_auc", "{:.3f}"), ("sensitivity", "test_sensitivity", "%"),
     ("specificity", "test_specificity", "%")],
    [("validation macro-F1", "validation_macro_f1", "{:.3f}"), ("test accuracy", "test_accuracy", "%"),
     ("test macro-F1", "test_macro_f1", "{:.3f}"), ("bacterial vs viral AUC", "test_auc_bacterial_vs_viral", "{:.3f}")],
]  # fmt: skip


def seed_markdown(study: dict[str, Any], cards: dict[str, ModelCard]) -> str:
    """The README's tables of the starts run with more than one seed (`--readme-table`), from `weights/seeds.json`:
    each run in seed order (the one in use marked), then mean ± sample standard deviation; percentages' spread in
    points."""

    def text(value: float | None, fmt: str) -> str:
        if value is None:
            return "–"
        return f"{100 * value:.1f}%" if fmt == "%" else fmt.format(value)

    def spread(figure: dict[str, Any] | None, fmt: str) -> str:
        if not figure:
            return "–"
        if figure.get("std") is None:
            return text(figure["mean"], fmt)
        return f"{text(figure['mean'], fmt)} ± " + (
            f"{100 * figure['std']:.1f}" if fmt == "%" else fmt.format(figure["std"])
        )

    tables = []
    for columns in MARKDOWN_COLUMNS:
        groups = [g for g in study.get("groups", []) if g["n_runs"] > 1 and columns[0][1] in g["figures"]]
        if not groups:
            continue
        lines = ["| start, runs | " + " | ".join(c[0] for c in columns) + " |", "| --- " * (len(columns) + 1) + "|"]
        for group in groups:
            order = sorted(range(group["n_runs"]), key=lambda i: (group["seeds"][i] is None, group["seeds"][i] or 0))
            deployed = cards.get(group["task"])
            source = deployed.training.get("deployed_from") if deployed else None  # run names, not seeds
            mean = isinstance(source, list)
            in_use, mark = (set(source), " (in the mean in use)") if mean else ({source}, " (in use)")
            seeds = [f"{group['seeds'][i]}" + (mark if group["runs"][i] in in_use else "") for i in order]
            runs = []
            for _, key, fmt in columns:
                values = group["figures"].get(key, {}).get("values")
                runs.append(" / ".join(text(values[i], fmt) for i in order) if values else "–")
            where = f"`{group['task']}`, {group['start']}"
            lines.append(f"| {where}, seed {' / '.join(seeds)} | " + " | ".join(runs) + " |")
            spreads = [spread(group["figures"].get(key), fmt) for _, key, fmt in columns]
            lines.append(f"| {where}, mean ± std ({group['n_runs']} runs) | " + " | ".join(spreads) + " |")
        tables.append("\n".join(lines))
    return "\n\n".join(tables)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.checks.seeds", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("folders", nargs="*", type=Path, help="folders of the extra seed runs' cards")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_DIR, help="the committed variant cards")
    parser.add_argument("--out", type=Path, default=None, help="write the groups here (JSON)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="an earlier output (weights/seeds.json): add the runs it recorded whose cards are not "
                             "given now (their folders are gone), with the figures it holds for them")  # fmt: skip
    parser.add_argument("--readme-table", action="store_true",
                        help="print the README's seed tables (Markdown) from --weights/seeds.json")  # fmt: skip
    args = parser.parse_args(argv)
    if args.readme_table:
        study = load_seed_study(args.weights)
        print(seed_markdown(study, list_cards(args.weights)) if study else "no seeds.json in " + str(args.weights))
        return 0 if study else 1
    extra = [card for folder in args.folders for card in list_cards(folder).values()]
    result = seed_groups(list_cards(args.weights), extra)
    kept = keep_recorded(result, json.loads(args.keep.read_text()), str(args.keep)) if args.keep else []
    result["command"] = shlex.join(["python", "-m", "core.checks.seeds", *(sys.argv[1:] if argv is None else argv)])
    result["date"] = datetime.date.today().isoformat()
    for group in result["groups"]:
        shown = ", ".join(
            f"{name} {f['mean']:.3f}" + (f" ± {f['std']:.3f}" if f["std"] is not None else "")
            for name, f in group["figures"].items()
        )
        print(f"{group['task']} / {group['start']}: {group['n_runs']} run(s) (seeds {group['seeds']}): {shown}")
    if kept:
        print(f"added as recorded in {args.keep} (their cards are not here): {'; '.join(kept)}")
    if result["left_out"]:
        print(f"left out (another split, or no test figures): {', '.join(result['left_out'])}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def load_seed_study(weights_dir: Path = WEIGHTS_DIR) -> dict[str, Any] | None:
    """The seed study written by this check into `weights_dir` (seeds.json), or None."""
    path = Path(weights_dir) / "seeds.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def seed_table(study: dict[str, Any], task: str) -> list[dict[str, str]]:
    """Display rows for one task: per start, its runs and "mean ± std" of each figure it has (a column that no start of
    the task has is left out)."""

    def shown(figure: dict[str, Any] | None, percent: bool) -> str:
        if figure is None:
            return "–"
        fmt = "{:.1%}" if percent else "{:.3f}"
        text = fmt.format(figure["mean"])
        return text + (" ± " + fmt.format(figure["std"]) if figure["std"] is not None else " (one run)")

    rows = []
    for group in study.get("groups", []):
        if group["task"] != task:
            continue
        figures = group["figures"]
        rows.append({
            "start": group["start"], "network": group["network"],
            "runs (seeds)": f"{group['n_runs']} (seeds {', '.join(str(s) for s in group['seeds'])})"
            + (f"; {len(group['recorded_runs'])} as recorded {group['kept_from'].get('date') or 'earlier'}"
               if group.get("recorded_runs") else ""),
            "validation": shown(figures.get("validation_auc") or figures.get("validation_macro_f1"), False),
            "test accuracy": shown(figures.get("test_accuracy"), True),
            "test AUC": shown(figures.get("test_auc"), False),
            "test macro-F1": shown(figures.get("test_macro_f1"), False),
            "test sensitivity": shown(figures.get("test_sensitivity"), True),
            "test specificity": shown(figures.get("test_specificity"), True),
            "test bacterial vs viral AUC": shown(figures.get("test_auc_bacterial_vs_viral"), False),
        })  # fmt: skip
    empty = [column for column in (rows[0] if rows else {}) if all(row[column] == "–" for row in rows)]
    return [{column: text for column, text in row.items() if column not in empty} for row in rows]


if __name__ == "__main__":
    raise SystemExit(main())
