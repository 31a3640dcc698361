"""Accuracy of a prediction over a labelled folder: class-per-folder inputs whose folder names are the run's classes.

``hpcnn predict RUN_DIR galaxies/test --out p.csv`` on a split written by ``hpcnn data generate``
(``test/<class>/*.png``) says how many it got right, overall and per class, without a second tool.
Inputs count as labelled only when every readable one sits in a folder named after a class; then
the top-1 prediction is compared with that folder's name. Torch-free: it reads the prediction rows.
"""
from __future__ import annotations

from pathlib import Path

from .listing import hdf5_row


class LabelTally:
    """Counts per true class (the input's folder name): [images, top-1 correct]; any unlabelled input turns it off."""

    def __init__(self, classes):
        self.classes = {str(c) for c in classes}
        self.counts: dict[str, list[int]] = {}
        self.unlabelled = 0

    def label_of(self, entry: str) -> str | None:
        if hdf5_row(entry) is not None:
            return None
        name = Path(entry).parent.name
        return name if name in self.classes else None

    def add(self, rows) -> None:
        """Prediction rows ``[path, class1, prob1, ..., error]``; rows with an error are not counted."""
        for row in rows:
            if row[-1]:
                continue
            label = self.label_of(row[0])
            if label is None:
                self.unlabelled += 1
                continue
            count = self.counts.setdefault(label, [0, 0])
            count[0] += 1
            count[1] += int(row[1] == label)

    def state(self) -> tuple[dict, int]:
        return self.counts, self.unlabelled

    def merge(self, states) -> None:
        """Fold in other ranks' ``state()`` (each rank predicted a shard)."""
        for counts, unlabelled in states:
            self.unlabelled += unlabelled
            for label, (n, correct) in counts.items():
                mine = self.counts.setdefault(label, [0, 0])
                mine[0] += n
                mine[1] += correct

    def summary(self) -> dict | None:
        """{accuracy, labelled, correct, per_class: {class: {n, correct, accuracy}}}, or None when not labelled."""
        if self.unlabelled or not self.counts:
            return None
        n = sum(c[0] for c in self.counts.values())
        correct = sum(c[1] for c in self.counts.values())
        per_class = {label: {"n": c[0], "correct": c[1], "accuracy": c[1] / c[0]}
                     for label, c in sorted(self.counts.items())}
        return {"accuracy": correct / n, "labelled": n, "correct": correct, "per_class": per_class}


def describe(summary: dict) -> str:
    """One line: ``accuracy 0.9375 (30/32 in class folders; spiral 15/16, elliptical 15/16)``."""
    classes = ", ".join(f"{name} {c['correct']}/{c['n']}" for name, c in summary["per_class"].items())
    return (f"accuracy {summary['accuracy']:.4f} ({summary['correct']}/{summary['labelled']} in class folders; "
            f"{classes})")


__all__ = ["LabelTally", "describe"]
