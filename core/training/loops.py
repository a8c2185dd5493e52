"""The two training loops: `fit_classifier` and `fit_segmenter`, with calibration (`calibrate`) and
"export with card + sha256" (`export_with_card`) written once.

Every network in weights/ is trained by one of these loops; the task modules say only what differs: the data,
the network, the batches (augmentation, sampling), the validation score and how the threshold is chosen.
Chest classifiers, the MRI tumour classifier, the chest backbone, the gate and the K-fold study's networks
go through `fit_classifier`; the MRI and CT segmenters through `fit_segmenter`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.checks.metrics import binary_metrics, fit_temperature, multiclass_metrics, youden_threshold
from core.models.cards import ModelCard, remove_stale_members, sha256_of
from core.models.scan_model import softmax
from core.training.fitting import (
    BestEpoch,
    StateMismatchError,
    TrainingState,
    best_epoch_monitor,
    best_mask_threshold,
    compile_cosine,
    export_model,
    fingerprint,
)

Log = Callable[[str], None]


@dataclass(frozen=True)
class FitSettings:
    """How long and how fast to train. `patience` None: a fixed number of epochs, the last weights kept
    (nothing is chosen on validation); otherwise the best validation epoch is kept, with early stopping."""

    epochs: int
    batch_size: int
    learning_rate: float
    patience: int | None = 8
    seed: int = 0
    checkpoint: Path | None = None  # the best weights; the state to resume from is saved beside it
    resume: bool = False  # continue from the saved state, when there is one
    stop_after: int | None = None  # with a fixed count: stop after this epoch of the `epochs`-long schedule

    @property
    def last_epoch(self) -> int:
        """The last epoch trained: `stop_after` where it cuts the schedule short, else `epochs`."""
        return self.epochs if self.stop_after is None else min(self.stop_after, self.epochs)

    def state(self, identity: str = "") -> TrainingState | None:
        """Where this run's state is saved (beside the checkpoint), tagged with the run's `identity`."""
        return None if self.checkpoint is None else TrainingState(self.checkpoint.with_suffix(".state.npz"), identity)


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """Weights n / (k * count) per class: every class counts as much in the loss."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes)
    return {i: float(len(labels) / (n_classes * max(int(c), 1))) for i, c in enumerate(counts)}


def predict_in_batches(forward: Callable, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """A compiled forward function over `x` in batches (no Keras `predict` overhead)."""
    return np.concatenate([np.asarray(forward(x[i : i + batch])) for i in range(0, len(x), batch)])


def shuffled_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """Shuffled, batched, prefetched pairs without augmentation."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed).batch(batch_size).prefetch(2)


def _train(model, dataset, steps: int, repeated: bool, settings: FitSettings, loss, score, metric: str, log: Log,
           class_weight: dict[int, float] | None = None, x_val: np.ndarray | None = None) -> BestEpoch:  # fmt: skip
    """Compile (AdamW, cosine over `steps` per epoch), fit with the validation monitor, keep the best (or the
    last) weights. `repeated`: the dataset is endless, so an epoch is `steps` batches. With a checkpoint, the state
    is saved after every epoch, tagged with a fingerprint of the run (settings, loss, starting weights, `x_val`),
    and `settings.resume` continues from it only when the fingerprint matches."""
    state = None
    if settings.checkpoint is not None and score is not None:
        leave_out = ("checkpoint", "resume", "stop_after")  # where a run stops does not change its schedule
        schedule = {k: v for k, v in settings.__dict__.items() if k not in leave_out}
        identity = fingerprint(model, np.zeros(0) if x_val is None else x_val, steps=steps, repeated=repeated,
                               loss=getattr(loss, "__name__", type(loss).__name__), class_weight=class_weight,
                               **schedule)  # fmt: skip
        state = settings.state(identity)
    compile_cosine(model, settings.learning_rate, steps, settings.epochs, loss)
    fixed = settings.patience is None
    callbacks, best, done = [], BestEpoch(), 0
    if score is not None:
        patience = settings.epochs + 1 if fixed else settings.patience
        monitor, best = best_epoch_monitor(model, score, metric, settings.epochs, patience, log,
                                           checkpoint=None if fixed else settings.checkpoint, state=state)  # fmt: skip
        callbacks.append(monitor)
        if settings.resume and state is not None and state.path.exists():
            done = state.restore(model, best)
            if done > settings.last_epoch:
                raise StateMismatchError(f"{state.path} is past epoch {settings.last_epoch} already ({done} done)")
            log(f"resumed from {state.path} after epoch {done} (best so far: epoch {best.epoch})")
        elif settings.resume:
            log(f"nothing to resume (no saved state at {state.path if state else 'this run: it saves none'}): "
                "training from the start")  # fmt: skip
    if done < settings.last_epoch and (fixed or done - best.epoch < settings.patience):
        model.fit(dataset, epochs=settings.last_epoch, initial_epoch=done, steps_per_epoch=steps if repeated else None,
                  class_weight=class_weight, callbacks=callbacks, verbose=0)  # fmt: skip
    if not fixed and best.weights is not None:
        model.set_weights(best.weights)
    else:
        best.epoch = settings.last_epoch
    return best


@dataclass
class ClassifierFit:
    """What the classifier loop leaves: the epoch history and the kept weights' validation logits."""

    best: BestEpoch
    logits: np.ndarray


def classifier_score(y_val: np.ndarray, n_classes: int) -> tuple[str, Callable[[np.ndarray], float]]:
    """The validation score of a classifier's logits: AUC with two classes, macro-F1 with more."""
    from sklearn.metrics import roc_auc_score

    if n_classes == 2:
        return "AUC", lambda logits: float(roc_auc_score(y_val, softmax(logits)[:, 1]))
    classes = [str(i) for i in range(n_classes)]
    return "macro-F1", lambda logits: float(multiclass_metrics(y_val, softmax(logits), classes)["macro_f1"])


def fit_classifier(
    model,
    batches,
    steps: int,
    x_val: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    settings: FitSettings,
    log: Log = print,
    class_weight: dict[int, float] | None = None,
    monitor: bool = True,
    repeated: bool = False,
) -> ClassifierFit:
    """Train a logits classifier on `batches` (a tf.data dataset of (image, label), `steps` batches an epoch)
    with cross-entropy; scored each epoch on validation (AUC or macro-F1) unless `monitor` is off."""
    import keras
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    metric, score_logits = classifier_score(y_val, n_classes)
    score = (lambda: score_logits(predict_in_batches(forward, x_val, 128))) if monitor else None
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    best = _train(model, batches, steps, repeated, settings, loss, score, metric, log, class_weight, x_val)
    return ClassifierFit(best, predict_in_batches(forward, x_val, 128))


def calibrate(
    card: ModelCard, logits: np.ndarray, y_val: np.ndarray, where: str, youden: bool = True
) -> dict[str, Any]:
    """Temperature scaling on validation, then the decision rule: Youden's J threshold on the positive class for
    a two-class card with a positive class (when `youden`), argmax otherwise. Writes both into the card and
    returns the validation metrics at that rule."""
    temperature, nll_before, nll_after = fit_temperature(logits, y_val)
    probabilities = softmax(logits, temperature)
    card.temperature = round(temperature, 4)
    card.calibration_method = f"temperature scaling on {where} (NLL {nll_before:.4f} -> {nll_after:.4f})"
    if youden and len(card.classes) == 2 and card.positive_class is not None:
        positive = probabilities[:, card.positive_index]
        card.threshold = round(youden_threshold(y_val, positive), 4)
        card.threshold_method = f"Youden's J (max sensitivity + specificity - 1) on {where}"
        return binary_metrics(y_val, positive, card.threshold)
    card.threshold_method = card.threshold_method or "argmax of the calibrated probabilities"
    return multiclass_metrics(y_val, probabilities, card.classes)


def _dice_bce(y_true, y_pred, per_slice: bool):
    """Binary cross-entropy plus (1 - soft Dice), the Dice over the whole batch or the mean of each slice's."""
    import keras.ops as ops
    from keras.losses import binary_crossentropy

    smooth = 1.0
    axes = (1, 2, 3) if per_slice else None
    intersection = ops.sum(y_true * y_pred, axis=axes)
    soft_dice = (2.0 * intersection + smooth) / (ops.sum(y_true, axis=axes) + ops.sum(y_pred, axis=axes) + smooth)
    return ops.mean(binary_crossentropy(y_true, y_pred)) + (1.0 - ops.mean(soft_dice))


def dice_bce_loss(y_true, y_pred):
    """Binary cross-entropy plus (1 - soft Dice over the batch)."""
    return _dice_bce(y_true, y_pred, per_slice=False)


def slice_dice_bce_loss(y_true, y_pred):
    """Binary cross-entropy plus (1 - the mean of each slice's soft Dice): a small lesion weighs as much as a
    large one, as in the mean per-slice Dice that the CT evaluation reports."""
    return _dice_bce(y_true, y_pred, per_slice=True)


#: The segmenters' losses by name (`--dice` of the training CLI).
SEGMENTER_LOSSES = {"batch": dice_bce_loss, "per-slice": slice_dice_bce_loss}


@dataclass
class SegmenterFit:
    """What the segmenter loop leaves: the history, and the mask threshold and test-time flip chosen on
    validation with the Dice they reach."""

    best: BestEpoch
    mask_threshold: float
    test_time_flip: bool
    validation_dice: float


def fit_segmenter(
    model,
    batches,
    steps: int,
    x_val: np.ndarray,
    validation_dice: Callable[[np.ndarray, float], float],
    settings: FitSettings,
    log: Log = print,
    metric: str = "Dice",
    choose_flip: bool = False,
    dice: str = "batch",
) -> SegmenterFit:
    """Train a sigmoid-mask network on endless `batches` of (image, mask), `steps` an epoch, with BCE + soft Dice
    (over the batch, or per slice with `dice` "per-slice");
    keep the epoch with the best `validation_dice(probabilities, 0.5)`, then choose the mask threshold (and, with
    `choose_flip`, whether to average with the mirror image's mask) on validation."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))

    def probabilities(x: np.ndarray) -> np.ndarray:
        return predict_in_batches(forward, x)[..., 0]

    score = lambda: validation_dice(probabilities(x_val), 0.5)  # noqa: E731
    best = _train(model, batches, steps, True, settings, SEGMENTER_LOSSES[dice], score, metric, log, x_val=x_val)
    plain = probabilities(x_val)
    flipped = (plain + probabilities(x_val[:, :, ::-1])[:, :, ::-1]) / 2 if choose_flip else None
    return SegmenterFit(best, *choose_mask_settings(plain, flipped, validation_dice))


def choose_mask_settings(
    plain: np.ndarray, flipped: np.ndarray | None, validation_dice: Callable[[np.ndarray, float], float]
) -> tuple[float, bool, float]:
    """(mask threshold, test-time flip, validation Dice): the threshold with the best `validation_dice` for the
    plain probabilities and, when `flipped` (their mean with the mirror image's, mirrored back) is given, for
    those too; the flip is kept only where it scores higher."""
    choices = {False: best_mask_threshold(lambda t: validation_dice(plain, t))}
    if flipped is not None:
        choices[True] = best_mask_threshold(lambda t: validation_dice(flipped, t))
    flip = bool(flipped is not None and choices[True][1] > choices[False][1])
    threshold, dice_value = choices[flip]
    return threshold, flip, float(dice_value)


def export_with_card(model, card: ModelCard, out_dir: Path, log: Log = print) -> Path:
    """Save the network alone (no optimiser state), put its sha256 in the card, save the card beside it."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights_path = out_dir / card.weights
    export_model(model, weights_path)
    card.sha256 = sha256_of(weights_path)
    card.save(out_dir / f"{card.name}.json")
    remove_stale_members(card, out_dir)  # an ensemble this network replaces leaves no member files behind
    log(f"saved {weights_path} ({weights_path.stat().st_size / 1e6:.2f} MB) and {card.name}.json")
    return weights_path


def history_fields(fit: BestEpoch, settings: FitSettings, started: float, **extra: Any) -> dict[str, Any]:
    """The card's `training` record common to every loop."""
    import time

    fields: dict[str, Any] = {
        "epochs_run": len(fit.history) or settings.last_epoch,
        "best_epoch": fit.epoch,
        "batch_size": settings.batch_size,
        "optimiser": f"AdamW lr {settings.learning_rate} cosine decay, weight decay 1e-4",
        **extra,
        "seed": settings.seed,
        "seconds": round(time.time() - started, 1),
        "history": fit.history,
    }
    if settings.patience is None and settings.last_epoch < settings.epochs:
        fields["selection"] = (
            f"the weights after epoch {settings.last_epoch} of a cosine schedule over {settings.epochs} epochs "
            "(nothing chosen on validation)"
        )
    elif settings.patience is None:
        fields["selection"] = "fixed epoch count, last weights (nothing chosen on validation)"
    return fields
