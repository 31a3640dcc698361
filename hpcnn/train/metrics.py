"""Classification metrics from the full set of logits and labels, computed by scikit-learn.

Ranks gather their logits before this runs, so a run on N ranks reports exactly what a
run on one rank reports over the same data.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score


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
    all_classes = np.arange(num_classes)
    cm = confusion_matrix(y, pred, labels=all_classes)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=all_classes, average=None,
                                                                     zero_division=0)
    present = support > 0
    k = min(topk, num_classes)
    topk_hits = (logits.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    return {
        "n": n,
        "loss": loss,
        "accuracy": float(accuracy_score(y, pred)),
        f"top{k}": topk_hits,
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "auc_ovr": roc_auc_ovr(torch.softmax(logits, 1).numpy(), y, num_classes),
        "per_class_recall": [float(r) for r in recall],
        "confusion_matrix": cm.tolist(),
    }


def roc_auc_ovr(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Macro one-vs-rest ROC AUC over the classes with both positives and negatives (NaN if none).

    sklearn's multi-class ``roc_auc_score`` refuses labels missing a class; this averages its
    binary AUCs over the classes where one is defined instead.
    """
    aucs = [roc_auc_score(labels == c, probs[:, c]) for c in range(num_classes)
            if 0 < np.count_nonzero(labels == c) < len(labels)]
    return float(np.mean(aucs)) if aucs else math.nan


def scalar_metrics(metrics: dict) -> dict:
    """The numbers worth a TensorBoard curve (drops matrices and lists)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}
