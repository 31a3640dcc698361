"""Learning-curve and confusion-matrix PNGs for the run directory (matplotlib, no display)."""
from __future__ import annotations

import logging
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curve(history: list[dict], path: Path) -> None:
    if not history:
        return
    plt = _pyplot()
    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h["train"]["loss"] for h in history], "o-", label="train")
    ax1.plot(epochs, [h["val"]["loss"] for h in history], "o-", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax1.legend()
    ax2.plot(epochs, [h["val"]["accuracy"] for h in history], "o-", label="validation accuracy")
    ax2.plot(epochs, [h["val"]["f1_macro"] for h in history], "s--", label="validation macro F1")
    ax2.set(xlabel="epoch", ylim=(0, 1.0), title="Validation")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(cm: list[list[int]], classes: list[str], path: Path, title: str) -> None:
    try:
        import numpy as np

        plt = _pyplot()
        m = np.asarray(cm, dtype=float)
        norm = m / np.maximum(m.sum(1, keepdims=True), 1)
        size = max(5, 0.6 * len(classes) + 2)
        fig, ax = plt.subplots(figsize=(size + 1, size))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(j, i, int(m[i, j]), ha="center", va="center",
                        color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
        ax.set(xlabel="predicted", ylabel="true", title=title)
        fig.colorbar(im, ax=ax, fraction=0.046)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)
    except Exception as err:  # a plot must never fail a finished run
        logging.getLogger("hpcnn").warning("could not draw %s: %s", path, err)
