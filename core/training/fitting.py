"""Pieces every training CLI shares: optimiser set-up, best-epoch tracking with early stopping, export."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BestEpoch:
    """The best validation score seen so far, its epoch and weights, and the per-epoch history."""

    score: float = float("-inf")
    epoch: int = 0
    weights: list[Any] | None = None
    history: list[dict[str, float]] = field(default_factory=list)


def compile_cosine(model, learning_rate: float, steps_per_epoch: int, epochs: int, loss) -> None:
    """AdamW (weight decay 1e-4) with a cosine-decayed learning rate."""
    import keras

    schedule = keras.optimizers.schedules.CosineDecay(
        learning_rate, decay_steps=max(1, steps_per_epoch * epochs), alpha=0.05
    )
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=1e-4), loss=loss)


class StateMismatchError(ValueError):
    """A saved training state belongs to another configuration than the run asked to resume it."""


def fingerprint(model, validation: Any, **settings: Any) -> str:
    """A digest of what makes a run this run: its settings (epochs, batch, learning rate, loss, steps...), the
    network's starting weights (architecture, start and seed) and the validation images (input size and split)."""
    import hashlib

    import numpy as np

    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for weights in model.get_weights():
        digest.update(str(weights.shape).encode())
        digest.update(np.ascontiguousarray(weights).tobytes())
    validation = np.ascontiguousarray(validation)
    digest.update(str(validation.shape).encode())
    digest.update(validation.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class TrainingState:
    """Where a training stands after an epoch, in one `.npz` file (written atomically): the network's weights,
    the optimiser's variables (its step count drives the cosine schedule), the best epoch so far with its
    weights, and the history. `python -m core.train ... --resume` continues from it."""

    path: Path
    fingerprint: str = ""  # what the run is: settings, loss, starting weights, validation data (see `fingerprint`)

    def save(self, model, best: BestEpoch, epochs_done: int) -> None:
        import numpy as np

        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        arrays |= {f"o{i}": np.asarray(v.numpy()) for i, v in enumerate(model.optimizer.variables)}
        arrays |= {f"b{i}": w for i, w in enumerate(best.weights or [])}
        meta = {"epochs_done": epochs_done, "best_score": best.score, "best_epoch": best.epoch, "history": best.history,
                "fingerprint": self.fingerprint}  # fmt: skip
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(self.path.name + ".partial.npz")
        np.savez(partial, **arrays)
        partial.replace(self.path)

    def restore(self, model, best: BestEpoch) -> int:
        """Load the saved state into a compiled `model` and into `best`; returns the epochs already done."""
        import numpy as np

        with np.load(self.path) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            if meta.get("fingerprint") != self.fingerprint:
                raise StateMismatchError(
                    f"{self.path} was saved by a different training (another network, start, input size, split, "
                    "loss or schedule); rerun without --resume, or with the same options as the interrupted run"
                )
            count = lambda prefix: sum(key.startswith(prefix) and key[1:].isdigit() for key in data.files)  # noqa: E731
            model.set_weights([data[f"w{i}"] for i in range(count("w"))])
            model.optimizer.build(model.trainable_variables)
            for variable, index in zip(model.optimizer.variables, range(count("o")), strict=True):
                variable.assign(data[f"o{index}"])
            best.weights = [data[f"b{i}"] for i in range(count("b"))] or None
        best.score, best.epoch, best.history = meta["best_score"], meta["best_epoch"], meta["history"]
        return int(meta["epochs_done"])


def best_epoch_monitor(
    model,
    score: Callable[[], float],
    metric: str,
    epochs: int,
    patience: int,
    log: Callable[[str], None],
    checkpoint: Path | None = None,
    state: TrainingState | None = None,
):
    """A Keras callback scoring the model on validation after every epoch: it keeps the best weights
    (and saves them to `checkpoint`), logs progress, stops after `patience` epochs without gain, and saves
    the `state` to resume from."""
    import keras

    best = BestEpoch()
    started = time.time()
    training_score = metric.startswith("training")  # a run without validation follows its training slices
    label = metric if training_score else f"validation {metric}"

    class Monitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = float(score())
            key = metric.replace(" ", "_") if training_score else f"val_{metric}"
            best.history.append({"epoch": epoch + 1, "loss": float(logs["loss"]), key: value})
            marker = ""
            if value > best.score:
                best.score, best.epoch, best.weights = value, epoch + 1, model.get_weights()
                if checkpoint is not None:
                    checkpoint.parent.mkdir(parents=True, exist_ok=True)
                    model.save(checkpoint)
                marker = " *"
            log(
                f"epoch {epoch + 1}/{epochs} loss {logs['loss']:.4f} {label} {value:.4f}{marker} "
                f"({time.time() - started:.0f}s)"
            )
            if state is not None:
                state.save(model, best, epoch + 1)
            if epoch + 1 - best.epoch >= patience:
                log(f"early stop: no improvement for {patience} epochs")
                self.model.stop_training = True

    return Monitor(), best


def best_mask_threshold(dice_at: Callable[[float], float]) -> tuple[float, float]:
    """The mask threshold in 0.20, 0.25, ..., 0.80 with the best validation Dice: (threshold, Dice)."""
    grid = [round(0.2 + 0.05 * step, 2) for step in range(13)]
    scores = [float(dice_at(threshold)) for threshold in grid]
    best = max(range(len(grid)), key=scores.__getitem__)
    return grid[best], scores[best]


def export_model(model, path: Path) -> None:
    """Save the network alone (no optimiser state): smaller files, same predictions."""
    import keras

    clean = keras.Model.from_config(model.get_config())
    clean.set_weights(model.get_weights())
    clean.save(path)
