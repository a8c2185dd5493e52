"""Model cards: the JSON file beside each `.keras` file in weights/ (torchxrayvision-style metadata)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ModelCardError

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"


@dataclass
class InputSpec:
    """What the network reads: size, channels and value range after preprocessing."""

    height: int
    width: int
    channels: int = 1
    value_range: tuple[float, float] = (0.0, 1.0)


#: An answer gets a caveat when at least this share of another class's test images got it.
CAVEAT_SHARE = 0.10


@dataclass
class ModelCard:
    """Everything the app and the CLIs need to know about one model."""

    name: str
    task: str
    title: str
    modality: str
    weights: str
    classes: list[str]
    input: InputSpec
    preprocessing: list[dict[str, Any]]
    positive_class: str | None = None
    threshold: float | None = None
    threshold_method: str = ""
    temperature: float = 1.0
    calibration_method: str = ""
    sha256: str = ""
    cam_layer: str = "last_conv"
    mask_threshold: float | None = None
    test_time_flip: bool = False
    min_component_voxels: int = 0
    decision_rule: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    architecture: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    limits: list[str] = field(default_factory=list)
    findings: dict[str, Any] = field(default_factory=dict)
    variant: str = ""
    deployed: bool = True
    members: list[dict[str, Any]] = field(default_factory=list)  # an ensemble's other networks (weights, sha256)
    path: Path | None = None

    @property
    def weights_path(self) -> Path:
        base = self.path.parent if self.path else WEIGHTS_DIR
        return base / self.weights

    @property
    def member_paths(self) -> list[Path]:
        """The weights files of an ensemble's other members (beside `weights_path`); empty for one network."""
        return [self.weights_path.with_name(member["weights"]) for member in self.members]

    @property
    def positive_index(self) -> int | None:
        return self.classes.index(self.positive_class) if self.positive_class in self.classes else None

    def confusion_classes(self) -> list[str]:
        """The class order of the test confusion matrix: as a multi-class evaluation names it, else (negative,
        positive) for a two-class model (`binary_metrics`), else the card's classes."""
        test = self.metrics.get("test", {})
        if test.get("classes"):
            return list(test["classes"])
        if len(self.classes) == 2 and self.positive_class in self.classes:
            return [c for c in self.classes if c != self.positive_class] + [self.positive_class]
        return list(self.classes)

    def answer_caveat(self, label: str) -> str | None:
        """What the held-out test set says about an answer `label`, when it was often wrong there: each other
        class of which at least `CAVEAT_SHARE` of the test images got this answer (for two classes: a positive
        answer at 90% specificity or below, a negative one at 90% sensitivity or below); None otherwise."""
        matrix = self.metrics.get("test", {}).get("confusion_matrix")  # rows = true class, columns = answer
        order = self.confusion_classes()
        if not matrix or label not in order or len(matrix) != len(order) or any(len(r) != len(order) for r in matrix):
            return None
        answered = order.index(label)
        shares = []
        for row, truth in enumerate(order):
            total, wrong = sum(matrix[row]), matrix[row][answered]
            if truth != label and total and wrong / total >= CAVEAT_SHARE:
                shares.append(
                    f"of the {total} {truth} images it answered **{label}** for {wrong} ({wrong / total:.0%})"
                )
        if not shares:
            return None
        return f"On its held-out test set, {'; '.join(shares)}. A {label} answer here may be wrong."

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("path")
        out["input"]["value_range"] = list(self.input.value_range)
        if not out["members"]:
            out.pop("members")  # one network: the field only names an ensemble's other members
        return out

    def save(self, path: Path | None = None) -> Path:
        target = Path(path or self.path or WEIGHTS_DIR / f"{self.name}.json")
        target.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        self.path = target
        return target

    @classmethod
    def from_dict(cls, raw: dict[str, Any], path: Path | None = None) -> ModelCard:
        try:
            raw = dict(raw)
            spec = dict(raw.pop("input"))
            spec["value_range"] = tuple(spec.get("value_range", (0.0, 1.0)))
            known = set(cls.__dataclass_fields__) - {"path", "input"}
            extra = set(raw) - known
            if extra:
                raise ModelCardError(f"Model card has unknown fields: {sorted(extra)}")
            return cls(input=InputSpec(**spec), path=path, **raw)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise ModelCardError(f"Model card {path or ''} is invalid: {error}") from None

    @classmethod
    def load(cls, path: Path) -> ModelCard:
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ModelCardError(f"Model card {path} cannot be read: {error}") from None
        return cls.from_dict(raw, path=Path(path))


def validation_key(card: ModelCard) -> str:
    """The validation figure a classifier run is judged by: AUC for two classes, macro-F1 otherwise."""
    return "auc" if len(card.classes) == 2 else "macro_f1"


def member_file(name: str, index: int) -> str:
    """The file of an ensemble's member `index`: NAME.keras for the first, NAME.mK.keras for the others."""
    return f"{name}.m{index}.keras" if index else f"{name}.keras"


def write_members(cards: Sequence[ModelCard], members: list[dict], out_dir: Path) -> ModelCard:
    """Copy the members' networks into `out_dir` (NAME.keras, NAME.m1.keras, ...) and return the ensemble's card
    (the first member's, listing the others with their sha256); the caller fills in how it decides."""
    first = cards[0]
    payloads = [card.weights_path.read_bytes() for card in cards]  # read all before writing (out may hold them)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for member, payload in zip(members, payloads, strict=True):
        (out_dir / member["weights"]).write_bytes(payload)
    ensemble = ModelCard.from_dict({**first.to_dict(), "members": []})
    ensemble.weights = members[0]["weights"]
    ensemble.sha256 = sha256_of(out_dir / ensemble.weights)
    ensemble.members = [{"weights": m["weights"], "sha256": sha256_of(out_dir / m["weights"])} for m in members[1:]]
    ensemble.findings = {}
    return ensemble


def remove_stale_members(card: ModelCard, folder: Path) -> list[Path]:
    """Delete ensemble member files named after `card` (NAME.mK.keras) in `folder` that its card does not list
    (left by an earlier, larger ensemble or before a single network replaced one); the paths removed."""
    listed = {member["weights"] for member in card.members}
    stale = [path for path in Path(folder).glob(f"{card.name}.m*.keras") if path.name not in listed]
    for path in stale:
        path.unlink()
    return stale


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_cards(weights_dir: Path = WEIGHTS_DIR) -> dict[str, ModelCard]:
    """All model cards in `weights_dir` whose weights file exists, by name."""
    cards = {}
    for path in sorted(Path(weights_dir).glob("*.json")):
        if path.name.endswith(".eval.json"):
            continue
        try:
            card = ModelCard.load(path)
        except ModelCardError:
            continue
        if card.weights_path.exists() and all(path.exists() for path in card.member_paths):
            cards[card.name] = card
    return cards


# The starts compared by the transfer-learning study: variant -> (start weights, network).
STARTS: dict[str, tuple[str, str]] = {
    "imagenet": ("ImageNet", "EfficientNet-Lite0"),
    "fine-tuned": ("our chest backbone", "compact CNN"),
    "scratch": ("random", "compact CNN"),
    "lite0-scratch": ("random", "EfficientNet-Lite0"),
}


def transfer_table(cards: dict[str, ModelCard]) -> list[dict[str, Any]]:
    """ImageNet start vs chest backbone vs scratch, per task: one row per trained variant (a deployed copy of
    a variant, which has the same weights, is not listed twice), with its validation and held-out test figures."""
    rows = []
    seen: set[tuple[str, str]] = set()
    order = list(STARTS)
    ranked = sorted(cards.values(), key=lambda c: (c.task, order.index(c.variant) if c.variant in order else 9, c.name))

    def networks(card: ModelCard) -> tuple:  # a mean of runs is not its first run, though it shares its file
        return (card.sha256, *(member.get("sha256") for member in card.members))

    for card in ranked:
        if card.variant not in STARTS or (card.task, networks(card)) in seen:
            continue
        seen.add((card.task, networks(card)))
        test = card.metrics.get("test", {})
        validation = card.metrics.get("validation", {})
        rows.append(
            {
                "task": card.task,
                "variant": card.variant,
                "start": STARTS[card.variant][0],
                "network": STARTS[card.variant][1],
                "model": card.name,
                "deployed": any(c.deployed and networks(c) == networks(card) for c in cards.values()),
                "seed": card.training.get("seed"),
                "networks": 1 + len(card.members),  # more than one: the mean of several runs
                "epochs": card.training.get("epochs_run"),
                "validation_auc": validation.get("auc"),
                "validation_macro_f1": validation.get("macro_f1"),
                "test_accuracy": test.get("accuracy"),
                "test_auc": test.get("auc"),
                "test_macro_f1": test.get("macro_f1"),
                "test_sensitivity": test.get("sensitivity"),
                "test_specificity": test.get("specificity"),
                "test_auc_bacterial_vs_viral": test.get("auc_bacterial_vs_viral"),
                "test_ci95": test.get("ci95", {}),
            }
        )
    return rows
