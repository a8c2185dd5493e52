"""Metrics, threshold choice and temperature calibration (NumPy + scikit-learn)."""

from __future__ import annotations

from typing import Any

import numpy as np


def binary_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, Any]:
    """Accuracy, sensitivity, specificity, precision, F1, AUC and the confusion matrix at `threshold`."""
    from sklearn.metrics import roc_auc_score, roc_curve

    y_true = np.asarray(y_true).astype(int)
    score = np.asarray(score, dtype=float)
    predicted = (score >= threshold).astype(int)
    tp = int(((predicted == 1) & (y_true == 1)).sum())
    tn = int(((predicted == 0) & (y_true == 0)).sum())
    fp = int(((predicted == 1) & (y_true == 0)).sum())
    fn = int(((predicted == 0) & (y_true == 1)).sum())
    sensitivity = tp / max(tp + fn, 1)
    specificity = tn / max(tn + fp, 1)
    precision = tp / max(tp + fp, 1)
    both_classes = len(np.unique(y_true)) == 2
    out: dict[str, Any] = {
        "n": len(y_true),
        "threshold": float(threshold),
        "accuracy": (tp + tn) / max(len(y_true), 1),
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": 2 * precision * sensitivity / max(precision + sensitivity, 1e-12),
        "balanced_accuracy": (sensitivity + specificity) / 2,
        "auc": float(roc_auc_score(y_true, score)) if both_classes else None,
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "confusion_matrix_labels": "rows = true (negative, positive), columns = predicted",
    }
    if both_classes:
        fpr, tpr, _ = roc_curve(y_true, score)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(len(fpr), 101)).astype(int))
        out["roc"] = {"fpr": [round(float(v), 4) for v in fpr[keep]], "tpr": [round(float(v), 4) for v in tpr[keep]]}
    return out


def multiclass_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (argmax decision)."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    predicted = np.asarray(probabilities).argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(y_true, predicted, labels=labels, zero_division=0)
    try:
        auc = float(roc_auc_score(y_true, probabilities, multi_class="ovr", labels=labels))
    except ValueError:
        auc = None
    return {
        "n": len(y_true),
        "accuracy": float((predicted == y_true).mean()),
        "macro_f1": float(f1_score(y_true, predicted, labels=labels, average="macro", zero_division=0)),
        "auc_ovr": auc,
        "auc_bacterial_vs_viral": bacterial_viral_auc(y_true, probabilities, classes),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
        "classes": classes,
    }


def youden_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """The threshold that maximises sensitivity + specificity - 1 (Youden's J)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(np.asarray(y_true).astype(int), np.asarray(score, dtype=float))
    best = int(np.argmax(tpr - fpr))
    return float(np.clip(thresholds[best], 1e-6, 1 - 1e-6))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> tuple[float, float, float]:
    """Temperature T minimising the validation negative log-likelihood: (T, nll at T=1, nll at T)."""
    logits = np.asarray(logits, dtype=np.float64)
    y_true = np.asarray(y_true).astype(int)

    def nll(temperature: float) -> float:
        scaled = logits / temperature
        scaled -= scaled.max(axis=1, keepdims=True)
        log_probs = scaled - np.log(np.exp(scaled).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(y_true)), y_true].mean())

    grid = np.exp(np.linspace(np.log(0.25), np.log(8.0), 141))
    losses = [nll(t) for t in grid]
    best = float(grid[int(np.argmin(losses))])
    return best, nll(1.0), nll(best)


def dice(prediction: np.ndarray, truth: np.ndarray, empty_value: float = 1.0) -> float:
    """Dice = 2|A∩B| / (|A|+|B|) of two binary masks; `empty_value` when both are empty."""
    a, b = np.asarray(prediction).astype(bool), np.asarray(truth).astype(bool)
    total = int(a.sum()) + int(b.sum())
    return empty_value if total == 0 else 2.0 * int((a & b).sum()) / total


def iou(prediction: np.ndarray, truth: np.ndarray, empty_value: float = 1.0) -> float:
    """Intersection over union of two binary masks; `empty_value` when both are empty."""
    a, b = np.asarray(prediction).astype(bool), np.asarray(truth).astype(bool)
    union = int((a | b).sum())
    return empty_value if union == 0 else int((a & b).sum()) / union


def bacterial_viral_auc(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> float | None:
    """AUC of bacterial vs viral among the pneumonia images (as Kermany et al.), scored by
    P(viral) / (P(bacterial) + P(viral))."""
    from sklearn.metrics import roc_auc_score

    if "BACTERIAL" not in classes or "VIRAL" not in classes:
        return None
    bacterial, viral = classes.index("BACTERIAL"), classes.index("VIRAL")
    y_true = np.asarray(y_true)
    keep = np.isin(y_true, [bacterial, viral])
    if len(np.unique(y_true[keep])) < 2:
        return None
    p = np.asarray(probabilities)[keep]
    return float(roc_auc_score(y_true[keep] == viral, p[:, viral] / np.maximum(p[:, viral] + p[:, bacterial], 1e-12)))


def bootstrap_intervals(
    y_true: np.ndarray,
    scores: np.ndarray,
    metrics_of: Any,
    keys: list[str],
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, list[float]]:
    """Percentile bootstrap confidence intervals of `keys` of ``metrics_of(y_true, scores)`` (images resampled
    with replacement; the model and its threshold stay fixed)."""
    rng = np.random.default_rng(seed)
    y_true, scores = np.asarray(y_true), np.asarray(scores)
    values: dict[str, list[float]] = {key: [] for key in keys}
    for _ in range(n_resamples):
        pick = rng.integers(0, len(y_true), len(y_true))
        if len(np.unique(y_true[pick])) < len(np.unique(y_true)):
            continue
        result = metrics_of(y_true[pick], scores[pick])
        for key in keys:
            if result.get(key) is not None:
                values[key].append(float(result[key]))
    tail = (1 - level) / 2 * 100
    return {
        key: [round(float(np.percentile(v, tail)), 4), round(float(np.percentile(v, 100 - tail)), 4)]
        for key, v in values.items()
        if v
    }
