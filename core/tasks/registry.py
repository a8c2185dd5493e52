"""The table of tasks: one entry per question the project trains a model for.

Each entry says what the task is (name, modality, kind, the question it answers, the population it was trained
on), where its data live and how they are split, its training defaults, its demo samples, and how to fit and
evaluate it. `python -m core.train` and `python -m core.evaluate` dispatch through this table; the pages read
their questions from it. Adding a task means adding one entry here (and its tests).

As torchxrayvision keeps one table of models, the model itself still carries its own classes, input spec,
temperature and thresholds in its JSON card (`core.models.cards`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ScanSightError
from core.models.scan_model import ScanModel

#: fit(args, common, optional): `args` are the training CLI's arguments; `common` (seed, limit, patience, log) and
#: `optional` (epochs, batch_size, learning_rate, widths, size: only those given) are keyword arguments.
Fit = Callable[[Any, dict[str, Any], dict[str, Any]], Any]
#: evaluate(model, args) -> (metrics, split name): `args` are the evaluation CLI's arguments.
Evaluate = Callable[[ScanModel, Any], tuple[dict[str, Any], str]]


class NoLabelledDataError(ScanSightError):
    """The evaluation folder holds nothing this task can be evaluated on."""


@dataclass(frozen=True)
class Task:
    """One task: what it answers, on which data, and how it is trained and evaluated."""

    name: str
    modality: str  # chest-xray | brain-mri | ct | any
    kind: str  # classification | segmentation | gate | backbone
    question: str
    train_data: str  # under the shared data folder
    test_data: str
    split: str
    fit: Fit
    evaluate: Evaluate | None = None
    population: str | None = None  # the patients it was trained on, for the source check: paediatric | adult
    defaults: Mapping[str, Any] = field(default_factory=dict)  # the training CLI's defaults where not its own
    sample_kind: str | None = None  # which demo samples (assets/samples) suit it
    in_app: bool = True


# ---------------------------------------------------------------- fitting
def _fit_chest(args, common: dict[str, Any], optional: dict[str, Any]):
    from core.training.classifier import train_classifier

    return train_classifier(args.task, args.data, args.out, init_from=args.init, name=args.name,
                            architecture=args.architecture, resume=args.resume, split_seed=args.split_seed,
                            **common, **optional)  # fmt: skip


def _segmenter(args) -> str:
    """The segmenters' architecture: the CLI's choice where it names one, else the ResUNet."""
    return args.architecture if args.architecture in ("resunet", "lite0-unet") else "resunet"


def _fit_mri_segmentation(args, common: dict[str, Any], optional: dict[str, Any]):
    from core.training.mri import train_segmentation, tune_postprocessing

    if not args.tune_only:
        train_segmentation(args.data, args.out, **common, **optional, architecture=_segmenter(args),
                           encoder_blocks=args.encoder_blocks, dice_loss=args.dice, resume=args.resume)  # fmt: skip
    return tune_postprocessing(args.out / "mri-segmentation.json", args.data, log=common["log"])


def _fit_mri_tumour(args, common: dict[str, Any], optional: dict[str, Any]):
    from core.training.mri import train_tumour, tune_tumour_rule

    optional = {k: v for k, v in optional.items() if k not in ("widths", "size")}
    if not args.tune_only:
        train_tumour(args.data, args.out, args.segmentation_card, **common, **optional)
    return tune_tumour_rule(args.out / "mri-tumour.json", args.segmentation_card, args.data, log=common["log"])


def _holds_out_nothing(card_path: Path) -> bool:
    """Whether the CT card at `card_path` held no slice out (a refit on every slice, or a mean of cross-validation
    folds): read as raw JSON, so that any card that loads can be asked."""
    import json

    return json.loads(card_path.read_text()).get("data", {}).get("validation_slices") == []


def _fit_ct(target: str) -> Fit:
    def fit(args, common: dict[str, Any], optional: dict[str, Any]):
        from core.training.ct import CtChoiceError, train_ct, tune_outline_margin
        from core.training.ct_ensemble import ensemble_ct

        card = None
        infection_card = args.infection_card or args.out / "ct-infection.json"
        if target == "lungs" and not Path(infection_card).exists():  # needed for the margin: say so before training
            raise FileNotFoundError(f"ct-lungs needs the infection model's card ({infection_card}): --infection-card")
        if target == "lungs" and _holds_out_nothing(Path(infection_card)):
            raise CtChoiceError(
                f"{infection_card} trained on every slice (a refit, or a mean of cross-validation folds): none is left "
                "to choose the lung outline's margin on; give a model validated on a split as --infection-card"
            )
        if target == "infection" and args.ensemble_of:
            return ensemble_ct(args.ensemble_of, args.data, args.out, log=common["log"])
        if not args.tune_only:
            card = train_ct(args.data, args.out, **common, **optional, target=target, architecture=_segmenter(args),
                            encoder_blocks=args.encoder_blocks, dice_loss=args.dice, resume=args.resume,
                            split_seed=args.split_seed, refit_of=getattr(args, "refit", None),
                            stop_after=getattr(args, "stop_after", None), folds=getattr(args, "folds", None),
                            fold=getattr(args, "fold", None))  # fmt: skip
        if target == "lungs":
            return tune_outline_margin(args.out / "ct-lungs.json", infection_card, args.data, log=common["log"])
        return card

    return fit


def _fit_gate(args, common: dict[str, Any], optional: dict[str, Any]):
    from core.training.gate import train_gate

    extra = {"epochs": optional["epochs"]} if "epochs" in optional else {}
    if args.limit:
        extra["per_class"] = args.limit
    return train_gate(args.data, args.out, seed=args.seed, log=common["log"], **extra)


def _fit_backbone(args, common: dict[str, Any], optional: dict[str, Any]):
    from core.training.pretrain import pretrain_backbone

    return pretrain_backbone(args.data, args.out, **common, **optional)


# ---------------------------------------------------------------- evaluation
def _evaluate_chest(model: ScanModel, args) -> tuple[dict[str, Any], str]:
    from core.checks.evaluation import LISTERS, evaluate_classifier
    from core.data.chest import covid_holdout

    if args.split == "validation":  # validation splits are drawn inside training; nothing here can rebuild them
        raise NoLabelledDataError(f"{args.task} has no validation split to evaluate here: use --split all or test")
    samples = LISTERS[args.task](args.data)
    split_name = args.split_name
    if args.task == "covid" and args.split == "test":
        samples, split_name = covid_holdout(samples)[1], "test"
    if not samples:
        raise NoLabelledDataError(f"no images found under {args.data}")
    return evaluate_classifier(model, samples), split_name


def _evaluate_mri(model: ScanModel, args) -> tuple[dict[str, Any], str]:
    from core.checks.evaluation import evaluate_mri_tumour, evaluate_segmentation, mri_patients

    patients = mri_patients(model, args.data, args.split)
    if not patients:
        raise NoLabelledDataError(f"no patient folders found under {args.data}")
    evaluator = evaluate_segmentation if args.task == "mri-segmentation" else evaluate_mri_tumour
    if args.split != "all":
        return evaluator(model, patients), args.split
    # Every patient in the folder: never recorded as the card's "test" (the folder may hold training patients)
    # unless a name is given, e.g. --split-name external for patients the project has never seen.
    return evaluator(model, patients), "all" if args.split_name == "test" else args.split_name


def _evaluate_ct_infection(model: ScanModel, args) -> tuple[dict[str, Any], str]:
    from core.checks.ct import evaluate_ct
    from core.data.ct import list_ct

    return evaluate_ct(model, list_ct(args.data)), args.split_name


def _evaluate_ct_lungs(model: ScanModel, args) -> tuple[dict[str, Any], str]:
    from core.checks.ct import evaluate_lungs
    from core.data.ct import list_ct

    gallery = args.out.with_name(args.out.name.split(".")[0] + ".gallery.jpg")
    infection = ScanModel.load("ct-infection", args.weights)
    metrics = evaluate_lungs(model, infection, list_ct(args.data), gallery)
    print(f"gallery of every outline: {gallery}")
    return {**metrics, "gallery": gallery.name}, args.split_name


def _evaluate_gate(model: ScanModel, args) -> tuple[dict[str, Any], str]:
    from core.checks.gate import evaluate_gate

    return evaluate_gate(model, args.data), args.split_name


CHEST_SPLIT = "validation: 15% of the training folder's patients (stratified, seed 0); test: the official test set"
MRI_SPLIT = "by patient, seed 0: 70% train / 10% validation / 20% test; never by slice"

TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("pneumonia", "chest-xray", "classification", "Pneumonia or normal? (children)",
             "chest_xray/train", "chest_xray/test", CHEST_SPLIT, _fit_chest, _evaluate_chest,
             population="paediatric", sample_kind="chest-xray"),
        Task("pneumonia-type", "chest-xray", "classification", "Normal, bacterial or viral pneumonia? (children)",
             "chest_xray/train", "chest_xray/test", CHEST_SPLIT, _fit_chest, _evaluate_chest,
             population="paediatric", sample_kind="chest-xray"),
        Task("covid", "chest-xray", "classification", "COVID-19 or normal? (adults)",
             "covid_radiography", "covid_radiography",
             "test: a fixed 20% held out (stratified, seed 0; core.data.chest.covid_split); validation: 15% of the "
             "rest", _fit_chest, _evaluate_chest, population="adult", sample_kind="chest-xray"),
        Task("mri-tumour", "brain-mri", "classification", "Is there a tumour on this slice?",
             "lgg_mri", "lgg_mri", MRI_SPLIT + " (the segmenter's split, reused)", _fit_mri_tumour, _evaluate_mri,
             sample_kind="brain-mri"),
        Task("mri-segmentation", "brain-mri", "segmentation", "Where is the tumour (FLAIR abnormality)?",
             "lgg_mri", "lgg_mri", MRI_SPLIT, _fit_mri_segmentation, _evaluate_mri,
             sample_kind="brain-mri"),
        Task("ct-infection", "ct", "segmentation", "Where is the COVID-19 infection in the lungs?",
             "covid_ct_seg/train", "covid_ct_seg/test", "validation: 8 of the 50 training slices (seed 0); test: the "
             "48 test slices", _fit_ct("infection"), _evaluate_ct_infection,
             defaults={"patience": 40}, sample_kind="ct"),
        Task("ct-lungs", "ct", "segmentation", "Where are the lungs (for the infected share)?",
             "covid_ct_seg/train", "covid_ct_seg/test", "as ct-infection", _fit_ct("lungs"), _evaluate_ct_lungs,
             defaults={"patience": 40}, sample_kind="ct", in_app=False),
        Task("gate", "any", "gate", "Is this a chest X-ray, a brain MRI slice, a CT slice, or none of them?",
             ".", ".", "each kind's training parts against generated and bundled non-medical images; test: the "
             "held-out parts", _fit_gate, _evaluate_gate, in_app=False),
        Task("chest-backbone", "chest-xray", "backbone", "Which group is this chest X-ray from? (pretext)",
             ".", ".", "training parts of chest_xray and covid_radiography only", _fit_backbone, None,
             in_app=False),
    )
}  # fmt: skip


def task(name: str) -> Task:
    """The task called `name` (a KeyError names the known ones)."""
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}")
    return TASKS[name]


def questions(modality: str) -> dict[str, str]:
    """Task name -> its question, for the tasks of one modality that the app offers."""
    return {t.name: t.question for t in TASKS.values() if t.modality == modality and t.in_app}


def population_of(name: str) -> str | None:
    """Whose images the task's models were trained on (paediatric or adult), if it matters."""
    return TASKS[name].population if name in TASKS else None


def default_path(name: str, data_root: Path, part: str = "train") -> Path:
    """The task's training or test folder under `data_root`."""
    entry = task(name)
    return Path(data_root) / (entry.train_data if part == "train" else entry.test_data)
