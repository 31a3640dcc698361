"""Classification metrics from the full set of logits and labels, in numpy.

Ranks gather their logits before this runs, so a run on N ranks reports exactly what a
run on one rank reports over the same data. Every rank computes them (early stopping and the
best epoch need them everywhere), so they are a few lines of numpy, bitwise equal to
scikit-learn's (``tests/unit/test_metrics_exact.py``): importing ``sklearn.metrics`` cost
each rank ~5,400 file-system calls (scipy, joblib, ...) for four functions.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, topk: int = 3,
                           label_smoothing: float = 0.0) -> dict:
    """Loss, accuracy, top-k, macro precision/recall/F1 and one-vs-rest AUC.

    Macro averages run over the classes present in ``labels`` (a class absent from an evaluation
    split neither counts as zero nor poisons the mean); a zero division counts as 0.
    """
    logits = logits.float().cpu()
    labels = labels.long().cpu()
    n = len(labels)
    if n == 0:
        return {"n": 0}
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item()
    y, pred = labels.numpy(), logits.argmax(1).numpy()
    cm = confusion_matrix(y, pred, num_classes)
    tp, true_sum, pred_sum = np.diag(cm), cm.sum(1), cm.sum(0)
    precision, recall = _divide(tp, pred_sum), _divide(tp, true_sum)
    f1 = _divide(2.0 * tp, true_sum + pred_sum)  # 2tp / (2tp + fp + fn), sklearn's own formula
    present = true_sum > 0
    k = min(topk, num_classes)
    topk_hits = (logits.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    return {
        "n": n,
        "loss": loss,
        "accuracy": float(np.count_nonzero(y == pred) / n),
        f"top{k}": topk_hits,
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "auc_ovr": roc_auc_ovr(torch.softmax(logits, 1).numpy(), y, num_classes),
        "per_class_recall": [float(r) for r in recall],
        "confusion_matrix": cm.tolist(),
    }


def confusion_matrix(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts: row = true class, column = predicted class (sklearn's layout), int64."""
    return np.bincount(y * num_classes + pred, minlength=num_classes * num_classes).reshape(num_classes, -1)


def _divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den in float64, 0 where den is 0 (sklearn's ``zero_division=0``)."""
    den = np.asarray(den, dtype=np.float64)
    return np.divide(np.asarray(num, dtype=np.float64), den, out=np.zeros_like(den), where=den != 0)


def roc_auc_ovr(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Macro one-vs-rest ROC AUC over the classes with both positives and negatives (NaN if none).

    sklearn's multi-class ``roc_auc_score`` refuses labels missing a class; this averages the
    binary AUCs over the classes where one is defined instead.
    """
    aucs = [binary_auc(labels == c, probs[:, c]) for c in range(num_classes)
            if 0 < np.count_nonzero(labels == c) < len(labels)]
    return float(np.mean(aucs)) if aucs else math.nan


def binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of one class, step for step as sklearn's ``roc_auc_score`` (so bitwise equal to it).

    The ROC curve's points at each distinct score (ties count half), the collinear ones dropped, then
    the trapezoidal rule. Needs both positives and negatives; a NaN score raises ValueError as sklearn does.
    """
    if not np.isfinite(score).all():
        raise ValueError("Input contains NaN.")
    order = np.argsort(-score, kind="stable")  # descending
    score, positive = score[order], positive[order].astype(np.float64)
    ends = np.r_[np.nonzero(np.diff(score))[0], len(score) - 1]  # the last sample of each distinct score
    tps = np.cumsum(positive)[ends]
    fps = 1 + ends.astype(np.float64) - tps
    if len(fps) > 2:
        keep = np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        fps, tps = fps[keep], tps[keep]
    fpr, tpr = np.r_[0.0, fps] / fps[-1], np.r_[0.0, tps] / tps[-1]
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def scalar_metrics(metrics: dict) -> dict:
    """The numbers worth a TensorBoard curve (drops matrices and lists)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}
