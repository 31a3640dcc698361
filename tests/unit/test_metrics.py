"""Metrics against scikit-learn on random and hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, precision_score, recall_score, roc_auc_score,
                             top_k_accuracy_score)

from hpcnn.train.metrics import classification_metrics, roc_auc_ovr


def test_matches_sklearn_on_random_predictions():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 5, generator=g)
    labels = torch.randint(0, 5, (500,), generator=g)
    logits[torch.arange(250), labels[:250]] += 2.0  # better than chance
    m = classification_metrics(logits, labels, 5, topk=2)
    pred = logits.argmax(1).numpy()
    y = labels.numpy()
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["precision_macro"] == pytest.approx(precision_score(y, pred, average="macro"))
    assert m["recall_macro"] == pytest.approx(recall_score(y, pred, average="macro"))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    probs = torch.softmax(logits, 1).numpy()
    assert m["auc_ovr"] == pytest.approx(roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    top2 = (logits.topk(2, 1).indices == labels[:, None]).any(1).float().mean().item()
    assert m["top2"] == pytest.approx(top2)
    assert np.asarray(m["confusion_matrix"]).sum() == 500
    assert np.trace(np.asarray(m["confusion_matrix"])) == (pred == y).sum()


def test_auc_handles_ties_and_missing_classes():
    probs = np.array([[0.5, 0.5, 0], [0.5, 0.5, 0], [0.2, 0.8, 0], [0.9, 0.1, 0]])
    labels = np.array([0, 1, 1, 0])
    expected = roc_auc_score(labels == 0, probs[:, 0])
    # class 2 never occurs: it is left out of the macro average instead of poisoning it
    assert roc_auc_ovr(probs, labels, 3) == pytest.approx(expected)
    assert math.isnan(roc_auc_ovr(probs[:1], labels[:1], 3))


def test_order_independent_so_gathered_shards_give_single_rank_numbers():
    g = torch.Generator().manual_seed(1)
    logits, labels = torch.randn(101, 4, generator=g), torch.randint(0, 4, (101,), generator=g)
    whole = classification_metrics(logits, labels, 4)
    perm = torch.randperm(101, generator=g)
    shuffled = classification_metrics(logits[perm], labels[perm], 4)
    for k in ("accuracy", "f1_macro", "auc_ovr", "confusion_matrix"):
        assert whole[k] == shuffled[k]
    assert whole["loss"] == pytest.approx(shuffled["loss"], rel=1e-6)


def test_matches_sklearn_with_a_class_missing_from_the_labels():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(300, 5, generator=g)
    labels = torch.tensor([0, 1, 2, 4])[torch.randint(0, 4, (300,), generator=g)]  # class 3 never occurs...
    logits[:40, 3] += 3.0  # ...but is predicted
    m = classification_metrics(logits, labels, 5, topk=3)
    y, pred, probs = labels.numpy(), logits.argmax(1).numpy(), torch.softmax(logits, 1).numpy()
    assert (pred == 3).any()
    present = np.unique(y)  # macro averages run over the classes that occur in the labels
    for key, fn in (("precision_macro", precision_score), ("recall_macro", recall_score), ("f1_macro", f1_score)):
        assert m[key] == pytest.approx(fn(y, pred, labels=present, average="macro", zero_division=0)), key
    assert m["per_class_recall"] == pytest.approx(list(recall_score(y, pred, labels=range(5), average=None,
                                                                    zero_division=0)))
    assert m["per_class_recall"][3] == 0.0
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=range(5)).tolist()
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    expected_auc = np.mean([roc_auc_score(y == c, probs[:, c]) for c in present])
    assert m["auc_ovr"] == pytest.approx(expected_auc)
    assert m["top3"] == pytest.approx(top_k_accuracy_score(y, probs, k=3, labels=range(5)))
