"""Pieces every training CLI shares: optimiser set-up, best-epoch tracking with early stopping, export."""

from __future__ import annotations

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


def best_epoch_monitor(
    model,
    score: Callable[[], float],
    metric: str,
    epochs: int,
    patience: int,
    log: Callable[[str], None],
    checkpoint: Path | None = None,
):
    """A Keras callback scoring the model on validation after every epoch: it keeps the best weights
    (and saves them to `checkpoint`), logs progress, and stops after `patience` epochs without gain."""
    import keras

    best = BestEpoch()
    started = time.time()

    class Monitor(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            value = float(score())
            best.history.append({"epoch": epoch + 1, "loss": float(logs["loss"]), f"val_{metric}": value})
            marker = ""
            if value > best.score:
                best.score, best.epoch, best.weights = value, epoch + 1, model.get_weights()
                if checkpoint is not None:
                    checkpoint.parent.mkdir(parents=True, exist_ok=True)
                    model.save(checkpoint)
                marker = " *"
            log(
                f"epoch {epoch + 1}/{epochs} loss {logs['loss']:.4f} validation {metric} {value:.4f}{marker} "
                f"({time.time() - started:.0f}s)"
            )
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
