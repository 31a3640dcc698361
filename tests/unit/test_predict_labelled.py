"""Accuracy of `hpcnn predict` over class-per-folder inputs (hpcnn/predict/labelled.py)."""
from __future__ import annotations

from hpcnn.predict.labelled import LabelTally, describe


def rows(*items):
    """(path, top-1 class, error) -> prediction rows as predict writes them (path, class1, prob1, error)."""
    return [[path, top1, "0.9", error] for path, top1, error in items]


def test_class_folders_give_accuracy_and_per_class_counts_errors_not_counted():
    tally = LabelTally(["spiral", "elliptical"])
    tally.add(rows(("t/spiral/1.png", "spiral", ""), ("t/spiral/2.png", "elliptical", ""),
                   ("t/elliptical/3.png", "elliptical", ""), ("t/elliptical/4.png", "", "cannot identify image")))
    summary = tally.summary()
    assert summary["accuracy"] == 2 / 3 and summary["labelled"] == 3 and summary["correct"] == 2
    assert summary["per_class"] == {"elliptical": {"n": 1, "correct": 1, "accuracy": 1.0},
                                    "spiral": {"n": 2, "correct": 1, "accuracy": 0.5}}
    assert describe(summary) == "accuracy 0.6667 (2/3 in class folders; elliptical 1/1, spiral 1/2)"


def test_any_input_outside_a_class_folder_means_no_accuracy():
    tally = LabelTally(["spiral", "elliptical"])
    tally.add(rows(("t/spiral/1.png", "spiral", ""), ("photos/5.png", "spiral", ""), ("x.h5[3]", "spiral", "")))
    assert tally.summary() is None
    assert LabelTally(["a", "b"]).summary() is None  # nothing predicted


def test_ranks_tallies_merge():
    one, two = LabelTally(["a", "b"]), LabelTally(["a", "b"])
    one.add(rows(("d/a/1.png", "a", "")))
    two.add(rows(("d/a/2.png", "b", ""), ("d/b/3.png", "b", "")))
    merged = LabelTally(["a", "b"])
    merged.merge([one.state(), two.state()])
    assert merged.summary()["per_class"]["a"] == {"n": 2, "correct": 1, "accuracy": 0.5}
    assert merged.summary()["accuracy"] == 2 / 3
