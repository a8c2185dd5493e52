"""Training CLI: ``python -m core.train TASK --data DIR [--out weights] ...`` for every task; the loops live in
`core.training`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from core.training.classifier import CLASSIFIER_ARCHITECTURES, CLASSIFIER_TASKS, train_classifier

ARCHITECTURES = (*CLASSIFIER_ARCHITECTURES, "resunet", "lite0-unet")
MRI_TASKS = ("mri-segmentation", "mri-tumour", "ct-infection", "ct-lungs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.train", description=__doc__)
    parser.add_argument("task", choices=sorted(CLASSIFIER_TASKS) + list(MRI_TASKS) + ["chest-backbone", "gate"])
    parser.add_argument("--data", type=Path, required=True, help="training folder (NORMAL/ + PNEUMONIA/, or patients)")
    parser.add_argument("--out", type=Path, default=Path("weights"))
    parser.add_argument("--size", type=int, default=None, help="input side in pixels (160 chest, 128 MRI)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use a subset (smoke runs)")
    parser.add_argument("--widths", type=str, default=None, help="channel widths per stage, comma separated")
    parser.add_argument("--segmentation-card", type=Path, default=Path("weights/mri-segmentation.json"))
    parser.add_argument("--init", type=Path, default=None, help="fine-tune from this pretrained backbone (.keras)")
    parser.add_argument("--name", type=str, default=None, help="model name when not the task's (a variant)")
    parser.add_argument(
        "--tune-only", action="store_true",
        help="mri-segmentation: only rechoose mask threshold, flip and component filter on validation patients; "
        "mri-tumour: only rechoose how classifier and mask combine",
    )  # fmt: skip
    parser.add_argument(
        "--architecture",
        choices=ARCHITECTURES,
        default="cnn",
        help="chest classifiers: the compact CNN, or EfficientNet-Lite0 from ImageNet / from scratch; "
        "CT: the ResUNet or a U-Net on the ImageNet Lite0 encoder",
    )
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder")
    log = lambda message: print(message, flush=True)  # noqa: E731
    common = {"seed": args.seed, "limit": args.limit, "patience": args.patience, "log": log}
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
    if args.task == "mri-segmentation":
        from core.training.mri import train_segmentation, tune_postprocessing

        if not args.tune_only:
            train_segmentation(args.data, args.out, **common, **optional)
        tune_postprocessing(args.out / "mri-segmentation.json", args.data, log=log)
    elif args.task in ("ct-infection", "ct-lungs"):
        from core.training.ct import train_ct

        common["patience"] = max(args.patience, 40) if args.patience == 8 else args.patience
        architecture = args.architecture if args.architecture in ("resunet", "lite0-unet") else "resunet"
        train_ct(args.data, args.out, **common, **optional, target="lungs" if args.task == "ct-lungs" else "infection",
                 architecture=architecture)  # fmt: skip
    elif args.task == "mri-tumour":
        from core.training.mri import train_tumour, tune_tumour_rule

        optional.pop("widths", None)
        optional.pop("size", None)
        if not args.tune_only:
            train_tumour(args.data, args.out, args.segmentation_card, **common, **optional)
        tune_tumour_rule(args.out / "mri-tumour.json", args.segmentation_card, args.data, log=log)
    elif args.task == "gate":
        from core.training.gate import train_gate

        train_gate(args.data, args.out, seed=args.seed, log=log, **{k: v for k, v in optional.items() if k == "epochs"},
                   **({"per_class": args.limit} if args.limit else {}))  # fmt: skip
    elif args.task == "chest-backbone":
        from core.training.pretrain import pretrain_backbone

        pretrain_backbone(args.data, args.out, **common, **optional)
    else:
        train_classifier(args.task, args.data, args.out, init_from=args.init, name=args.name,
                         architecture=args.architecture, **common, **optional)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
