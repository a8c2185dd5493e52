"""Training CLI: ``python -m core.train TASK --data DIR [--out weights] ...`` for every task of the table in
`core.tasks.registry`; the loops live in `core.training.loops`."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from core.models.cards import ModelCard
from core.tasks.registry import TASKS
from core.training.classifier import CLASSIFIER_ARCHITECTURES
from core.training.ct import CtChoiceError

ARCHITECTURES = (*CLASSIFIER_ARCHITECTURES, "resunet", "lite0-unet")
#: The tasks whose training saves a state after every epoch (the long ones).
RESUMABLE = ("pneumonia", "pneumonia-type", "covid", "mri-segmentation", "ct-infection", "ct-lungs")
#: The tasks whose settings `--tune-only` rechooses on validation without training.
SPLIT_SEEDED = ("pneumonia", "pneumonia-type", "covid", "ct-infection", "ct-lungs")
TUNABLE = ("mri-segmentation", "mri-tumour", "ct-lungs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__)
    parser.add_argument("task", choices=list(TASKS))
    parser.add_argument("--data", type=Path, required=True, help="training folder (NORMAL/ + PNEUMONIA/, or patients)")
    parser.add_argument("--out", type=Path, default=Path("weights"))
    parser.add_argument("--size", type=int, default=None, help="input side in pixels (160 chest, 128 MRI)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--patience", type=int, default=None,
        help="early-stopping patience (the task's default); 0: no early stopping, the last epoch's weights are kept",
    )  # fmt: skip
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--split-seed", type=int, default=None,
        help="chest classifiers and CT segmenters: the seed that draws the validation split (default --seed); runs "
        "that differ only in --seed then share one split",
    )  # fmt: skip
    parser.add_argument("--limit", type=int, default=None, help="use a subset (smoke runs)")
    parser.add_argument("--widths", type=str, default=None, help="channel widths per stage, comma separated")
    parser.add_argument("--segmentation-card", type=Path, default=Path("weights/mri-segmentation.json"))
    parser.add_argument(
        "--infection-card", type=Path, default=None,
        help="ct-lungs: the infection model whose masks join the lungs (default OUT/ct-infection.json)",
    )  # fmt: skip
    parser.add_argument("--init", type=Path, default=None, help="fine-tune from this pretrained backbone (.keras)")
    parser.add_argument("--name", type=str, default=None, help="model name when not the task's (a variant)")
    parser.add_argument(
        "--tune-only", action="store_true",
        help="mri-segmentation: only rechoose mask threshold, flip and component filter on validation patients; "
        "mri-tumour: only rechoose how classifier and mask combine; ct-lungs: only rechoose the outline margin",
    )  # fmt: skip
    parser.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="cnn",
        help="chest classifiers: the compact CNN, or EfficientNet-Lite0 from ImageNet / from scratch; "
        "CT and MRI segmentation: the ResUNet or a U-Net on the ImageNet Lite0 encoder",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help="continue an interrupted training from the state saved after its last epoch "
        f"(OUT/.checkpoints/NAME.state.npz; {', '.join(RESUMABLE)})",
    )  # fmt: skip
    parser.add_argument(
        "--dice", choices=["batch", "per-slice"], default="batch",
        help="segmenters: the soft Dice of the loss over the whole batch, or the mean of each slice's",
    )  # fmt: skip
    parser.add_argument(
        "--ensemble-of", type=Path, nargs="+", default=None, metavar="CARD",
        help="ct-infection: no training; one model (their mean) from these members' cards: runs on one split (mask "
        "threshold and flip rechosen on their shared validation slices), the K runs of --folds (chosen on their "
        "out-of-fold masks; an earlier ensemble of folds, given by its card, joins new runs of the same folds) or "
        "refits (kept from the model they repeat)",
    )  # fmt: skip
    parser.add_argument(
        "--refit", type=Path, default=None, metavar="CARD",
        help="ct-infection: train on every slice of --data for exactly --epochs (no validation) and take the mask "
        "threshold and flip of CARD, a model of the same recipe validated on a split of that folder",
    )  # fmt: skip
    parser.add_argument(
        "--stop-after", type=int, default=None, metavar="EPOCH",
        help="ct-infection with --refit or --patience 0: stop after this epoch of the --epochs-long cosine schedule "
        "(e.g. where the validated runs had their best epoch)",
    )  # fmt: skip
    parser.add_argument(
        "--folds", type=int, default=None, metavar="K",
        help="ct-infection: cross-validation; hold out fold --fold of K (drawn by --split-seed) instead of 8 slices; "
        "the K runs then make one model with --ensemble-of, its settings chosen on their out-of-fold masks",
    )  # fmt: skip
    parser.add_argument("--fold", type=int, default=None, metavar="I", help="with --folds: the fold held out (0..K-1)")
    parser.add_argument("--encoder-blocks", type=int, default=11, help="lite0-unet segmenters: encoder blocks")
    args = parser.parse_args(argv)
    if (args.folds is None) != (args.fold is None):
        parser.error("--folds and --fold go together")
    if args.folds is not None:
        if args.task != "ct-infection":
            parser.error("--folds applies to ct-infection only")
        if args.folds < 2 or not 0 <= args.fold < args.folds:
            parser.error("--folds K needs K >= 2 and --fold between 0 and K-1")
        if args.refit is not None or args.ensemble_of:
            parser.error("--folds trains one fold: --refit and --ensemble-of do not apply")
        if args.split_seed is None:
            parser.error("--folds: give --split-seed, so that the K runs cut the same folds whatever their --seed")
    if args.tune_only and args.task not in TUNABLE:
        parser.error(
            f"--tune-only: {args.task} has nothing to rechoose without training; it applies to {', '.join(TUNABLE)}"
        )
    if args.dice != "batch" and TASKS[args.task].kind != "segmentation":
        parser.error("--dice applies to the segmenters only")
    if args.resume and args.task not in RESUMABLE:
        parser.error(f"--resume: {args.task} trains in minutes and saves no state; resumable: {', '.join(RESUMABLE)}")
    if args.ensemble_of:
        if args.task != "ct-infection":
            parser.error("--ensemble-of applies to ct-infection only")
        if len(args.ensemble_of) < 2:
            parser.error("--ensemble-of needs at least two member cards")
        if missing := [str(path) for path in args.ensemble_of if not path.is_file()]:
            parser.error(f"--ensemble-of: no card at {', '.join(missing)}")
        if args.resume or args.tune_only or args.split_seed is not None or args.limit:
            parser.error("--ensemble-of trains nothing: --resume, --tune-only, --split-seed and --limit do not apply")
    if args.refit is not None:
        if args.task != "ct-infection":
            parser.error("--refit applies to ct-infection only")
        if not args.refit.is_file():
            parser.error(f"--refit: no card at {args.refit}")
        if args.epochs is None:
            parser.error("--refit trains for a fixed number of epochs (nothing to stop on): give --epochs")
        if args.ensemble_of or args.tune_only or args.split_seed is not None or args.patience:
            parser.error("--refit holds out nothing: --ensemble-of, --tune-only, --split-seed and --patience "
                         "do not apply")  # fmt: skip
    if args.stop_after is not None:
        if args.task != "ct-infection" or not (args.refit or args.patience == 0):
            parser.error("--stop-after applies to ct-infection runs of a fixed length (--refit or --patience 0)")
        if args.epochs is None or not 1 <= args.stop_after <= args.epochs:
            parser.error("--stop-after: an epoch between 1 and --epochs")
    if args.patience is not None and args.patience < 0:
        parser.error("--patience: 0 (no early stopping) or more epochs")
    if args.init is not None and (args.seed if args.split_seed is None else args.split_seed) != 0:
        parser.error(
            "--init: the chest backbone left out the validation patients of split seed 0 only; fine-tune on that "
            "split (--split-seed 0) so that validation stays unseen"
        )
    if args.split_seed is not None and args.task not in SPLIT_SEEDED:
        parser.error(f"--split-seed applies to {', '.join(SPLIT_SEEDED)} only")
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")
    entry = TASKS[args.task]
    log = lambda message: print(message, flush=True)  # noqa: E731
    patience = args.patience if args.patience is not None else entry.defaults.get("patience", 8)
    patience = None if patience == 0 else patience  # 0: a fixed number of epochs, the last weights kept
    common = {"seed": args.seed, "limit": args.limit, "patience": patience, "log": log}
    optional = {
        key: value
        for key, value in {
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.lr,
            "widths": [int(w) for w in args.widths.split(",")] if args.widths else None,
            "size": args.size,
        }.items()
        if value is not None
    }
    try:
        result = entry.fit(args, common, optional)
    except CtChoiceError as error:  # members, a source or held-out slices that do not fit: a message, no traceback
        option = "--ensemble-of" if args.ensemble_of else "--refit" if args.refit else args.task
        parser.error(f"{option}: {error}")
    if isinstance(result, ModelCard) and result.path is not None:  # the card says which command made it
        given = list(sys.argv[1:] if argv is None else argv)
        result.training["tune_command" if args.tune_only else "command"] = shlex.join(
            ["python", "-m", "core.train", *given]
        )
        result.save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
