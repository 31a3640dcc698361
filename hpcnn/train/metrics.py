"""Classification metrics from the full set of logits and labels.

Ranks gather their logits before this runs, so a run on N ranks reports exactly what a
run on one rank reports over the same data.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, topk: int = 3,
                           label_smoothing: float = 0.0) -> dict:
    logits = logits.float().cpu()
    labels = labels.long().cpu()
    n = len(labels)
    if n == 0:
        return {"n": 0}
    loss = F.cross_entropy(logits, labels, label_smoothing=label_smoothing).item()
    pred = logits.argmax(1)
    cm = torch.bincount(labels * num_classes + pred, minlength=num_classes * num_classes)
    cm = cm.view(num_classes, num_classes).numpy()
    tp = np.diag(cm).astype(float)
    support, predicted = cm.sum(1).astype(float), cm.sum(0).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(support > 0, tp / support, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    k = min(topk, num_classes)
    topk_hits = (logits.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean().item()
    return {
        "n": n,
        "loss": loss,
        "accuracy": float(tp.sum() / n),
        f"top{k}": topk_hits,
        "precision_macro": float(precision[present].mean()),
        "recall_macro": float(recall[present].mean()),
        "f1_macro": float(f1[present].mean()),
        "auc_ovr": roc_auc_ovr(torch.softmax(logits, 1).numpy(), labels.numpy(), num_classes),
        "per_class_recall": [float(r) for r in recall],
        "confusion_matrix": cm.tolist(),
    }


def _binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney U with average ranks for ties."""
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(len(scores), dtype=float)
    i = 0
    while i < len(scores):
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc_ovr(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Macro one-vs-rest ROC AUC over the classes present (NaN if fewer than two)."""
    aucs = [_binary_auc(probs[:, c], labels == c) for c in range(num_classes)]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else math.nan


def scalar_metrics(metrics: dict) -> dict:
    """The numbers worth a TensorBoard curve (drops matrices and lists)."""
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and k != "n"}
