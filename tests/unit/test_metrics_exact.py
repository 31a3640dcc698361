"""hpcnn's numpy metrics are bitwise equal to scikit-learn's, which they replace on the job path."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

from hpcnn.train.metrics import binary_auc, classification_metrics


def sklearn_metrics(logits: torch.Tensor, labels: torch.Tensor, k: int) -> dict:
    """What ``classification_metrics`` computed with scikit-learn before (the same keys)."""
    y, pred = labels.numpy(), logits.argmax(1).numpy()
    classes = np.arange(k)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=classes, average=None,
                                                                     zero_division=0)
    present = support > 0
    probs = torch.softmax(logits.float(), 1).numpy()
    aucs = [roc_auc_score(y == c, probs[:, c]) for c in range(k) if 0 < np.count_nonzero(y == c) < len(y)]
    return {"accuracy": float(accuracy_score(y, pred)), "precision_macro": float(precision[present].mean()),
            "recall_macro": float(recall[present].mean()), "f1_macro": float(f1[present].mean()),
            "auc_ovr": float(np.mean(aucs)) if aucs else math.nan, "per_class_recall": [float(r) for r in recall],
            "confusion_matrix": confusion_matrix(y, pred, labels=classes).tolist()}


def cases():
    g = torch.Generator().manual_seed(0)
    for n, k in ((1, 3), (2, 2), (7, 3), (64, 10), (500, 5), (1000, 8), (3001, 10)):
        logits = torch.randn(n, k, generator=g)
        labels = torch.randint(0, k, (n,), generator=g)
        logits[: n // 2][torch.arange(n // 2), labels[: n // 2]] += 1.5
        yield logits, labels, k
        yield logits.round(decimals=0), labels, k  # many tied scores
        yield logits, labels.clamp(max=k - 2), k  # the last class never occurs but may be predicted
        yield torch.zeros(n, k), labels, k  # one score for everything: AUC 0.5, every prediction class 0


@pytest.mark.parametrize("case", list(cases()), ids=lambda c: f"{len(c[1])}x{c[2]}")
def test_bitwise_equal_to_sklearn(case):
    logits, labels, k = case
    ours, theirs = classification_metrics(logits, labels, k), sklearn_metrics(logits, labels, k)
    for key, value in theirs.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == value, key  # equal, not approximately


def test_binary_auc_equal_to_sklearn_on_float32_and_float64_scores():
    rng = np.random.default_rng(3)
    for n in (2, 3, 10, 257, 5000):
        positive = rng.random(n) < 0.3
        positive[0], positive[-1] = True, False
        for score in (rng.random(n).astype(np.float32), rng.integers(0, 4, n).astype(np.float64), rng.random(n)):
            assert binary_auc(positive, score) == roc_auc_score(positive, score)


def test_a_nan_score_fails_as_sklearn_did():
    score = np.array([0.1, np.nan, 0.3], dtype=np.float32)
    with pytest.raises(ValueError, match="NaN"):
        binary_auc(np.array([True, False, True]), score)
    with pytest.raises(ValueError, match="NaN"):
        roc_auc_score(np.array([True, False, True]), score)
