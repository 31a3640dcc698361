"""``hpcnn explain RUN_DIR``: Grad-CAM grids of a finished (or running) run, written to RUN_DIR/explain/.

The run's own config rebuilds the model and its data split (the same normalisation as in
training); the weights come from ``checkpoints/best.pt`` (else ``model_final.pt``). Two PNGs:
a few tiles per true class, and the most confident mistakes; ``explain.json`` lists every tile.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import torch

from ..errors import CheckpointError, ConfigError, DatasetError
from ..files import atomic_write_text
from ..rundir import CHECKPOINT_CHOICES, checkpoint, checkpoints_dir, config_for_resume
from ..models.registry import build_model
from ..train.checkpoint import load_file
from ..train.inputs import job_inputs
from .gradcam import gradcam, target_layer

log = logging.getLogger("hpcnn")
BATCH = 128


def checkpoint_path(run_dir: Path, which: str = "best") -> Path:
    """``best``: checkpoints/best.pt, else model_final.pt; ``final``: model_final.pt."""
    if (found := checkpoint(run_dir, which)) is not None:
        return found
    raise CheckpointError(f"no {' or '.join(CHECKPOINT_CHOICES[which])} in the run", str(checkpoints_dir(run_dir)),
                          "explain a run that finished at least one epoch" +
                          ("; or use --checkpoint best" if which == "final" else ""))


def load_run_model(run_dir: Path, cfg, classes: list, which: str = "best", device="cpu"):
    """The run's model with its checkpoint's weights, in eval mode, and the checkpoint's path."""
    path = checkpoint_path(run_dir, which)
    try:
        state = load_file(path)
    except Exception as err:  # truncated file, bad pickle: torch's message spans lines
        raise CheckpointError(f"unreadable checkpoint: {str(err).strip().splitlines()[0][:200]}", str(path)) from None
    model_cfg = dataclasses.replace(cfg.model, weights=None)  # the architecture only; weights from the run
    model, _ = build_model(model_cfg, len(classes), cfg.data.channels, cfg.data.image_size, classes)
    try:
        model.load_state_dict(state["model"] if "model" in state else state)
    except RuntimeError as err:
        raise CheckpointError("the checkpoint does not fit the run's model config", str(path),
                              str(err).strip().splitlines()[0][:200]) from None
    return model.to(device).eval(), path


def _images(dataset, idx) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (B,C,H,W) and labels for the indices (in-memory sets batched, files one by one)."""
    if hasattr(dataset, "__getitems__"):
        x, y = dataset.__getitems__(list(idx))
        return x, torch.as_tensor(y)
    items = [dataset[i] for i in idx]
    if any(item is None for item in items):
        raise DatasetError("unreadable image in the split", "explain", "remove it, or set data.on_corrupt: skip")
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


@torch.no_grad()
def _predict(model, dataset, normalize, device) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities (N,C), labels (N,)) over the whole split."""
    probs, labels = [], []
    for start in range(0, len(dataset), BATCH):
        x, y = _images(dataset, range(start, min(start + BATCH, len(dataset))))
        probs.append(torch.softmax(model(normalize(x.to(device))).float(), 1).cpu())
        labels.append(y)
    return torch.cat(probs), torch.cat(labels)


def pick_tiles(probs: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[list[int], list[int]]:
    """(per-class indices: n spread over the classes, first images of each; the n most confident mistakes)."""
    classes = probs.shape[1]
    per_class = []
    for c in range(classes):
        want = n // classes + (1 if c < n % classes else 0)
        per_class += torch.nonzero(labels == c).flatten()[:want].tolist()
    conf, pred = probs.max(1)
    wrong = torch.nonzero(pred != labels).flatten()
    order = torch.argsort(conf[wrong], descending=True, stable=True)
    return per_class, wrong[order][:n].tolist()


def _explain(model, dataset, normalize, idx, probs, layer, device) -> tuple[list[dict], list]:
    """Tiles (dicts for explain.json) and (image, heat) pairs for ``idx``; Grad-CAM on the predicted class."""
    tiles, pictures = [], []
    for start in range(0, len(idx), BATCH):
        chunk = idx[start:start + BATCH]
        x, y = _images(dataset, chunk)
        pred = probs[chunk].argmax(1)
        heat, _, _ = gradcam(model, normalize(x.to(device)), pred.to(device), layer)
        for j, i in enumerate(chunk):
            tiles.append({"index": int(i), "true": int(y[j]), "pred": int(pred[j]), "prob": float(probs[i, pred[j]])})
            pictures.append((x[j].cpu(), heat[j].cpu()))
    return tiles, pictures


def explain_run(run_dir, split: str = "test", n: int = 32, layer: str | None = None,
                checkpoint: str = "best", device: str | None = None) -> dict:
    """Write RUN_DIR/explain/{gradcam_per_class.png, gradcam_mistakes.png, explain.json}; the JSON as a dict."""
    run_dir = Path(run_dir)
    if n < 1:
        raise ConfigError(f"--n must be at least 1, got {n}", "--n")
    cfg = config_for_resume(run_dir)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    splits, normalize = job_inputs(cfg, announce=False)
    dataset = getattr(splits, split)
    if dataset is None or not len(dataset):
        raise DatasetError(f"the run has no {split} split", str(run_dir),
                           "use --split val" if split == "test" else None)
    model, path = load_run_model(run_dir, cfg, splits.classes, checkpoint, dev)
    layer = target_layer(model, layer)[0]  # a wrong --layer fails before any work
    normalize = normalize.to(dev)
    probs, labels = _predict(model, dataset, normalize, dev)
    per_class, mistakes = pick_tiles(probs, labels, n)
    out = run_dir / "explain"
    out.mkdir(parents=True, exist_ok=True)
    report = {"run_dir": str(run_dir), "checkpoint": str(path), "split": split, "layer": layer,
              "classes": list(splits.classes), "images": len(labels),
              "accuracy": float((probs.argmax(1) == labels).float().mean())}
    for key, idx, title in (("per_class", per_class, "per class"), ("mistakes", mistakes, "most confident mistakes")):
        tiles, pictures = _explain(model, dataset, normalize, idx, probs, layer, dev)
        png = out / f"gradcam_{key}.png"
        tile_grid(pictures, tiles, splits.classes, png, f"Grad-CAM on {layer}, {split} split: {title}")
        report.update({key: tiles, f"{key}_png": str(png)})
    atomic_write_text(out / "explain.json", json.dumps(report, indent=2) + "\n")
    log.info("explain: %d + %d tiles in %s", len(report["per_class"]), len(report["mistakes"]), out)
    return report


TITLE_CHARS = 16  # a class name longer than this is shortened in a tile's title (explain.json keeps it whole)


def _short(name: str) -> str:
    name = str(name)
    return name if len(name) <= TITLE_CHARS else name[:TITLE_CHARS - 1] + "…"


def tile_title(true: str, pred: str, prob: float) -> str:
    """Two short lines, so neighbouring tiles' titles never run into each other: 'true X' / 'pred Y (p)'."""
    return f"true {_short(true)}\npred {_short(pred)} ({prob:.2f})"


def tile_figure(pictures: list, tiles: list[dict], classes: list, title: str):
    """The matplotlib figure of ``tile_grid``: each tile the image, the heatmap over it, its two-line title."""
    from ..train.plots import _pyplot

    plt = _pyplot()
    cols = min(8, max(1, len(pictures)))
    rows = max(1, -(-len(pictures) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 2.3 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, heat), tile in zip(axes.flat, pictures, tiles):
        img = image.numpy()  # uint8 (C,H,W); imshow draws (H,W) grey or (H,W,3) RGB
        grey = img.shape[0] == 1
        ax.imshow(img[0] if grey else img[:3].transpose(1, 2, 0), cmap="gray" if grey else None, vmin=0, vmax=255)
        ax.imshow(heat.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        wrong = tile["true"] != tile["pred"]
        ax.set_title(tile_title(classes[tile["true"]], classes[tile["pred"]], tile["prob"]), fontsize=7,
                     color="red" if wrong else "black", linespacing=1.1)
    if not pictures:
        axes[0, 0].text(0.5, 0.5, "none", ha="center", va="center", fontsize=12)
    fig.suptitle(title + "   [true / predicted (probability); red: wrong]", fontsize=9)
    fig.tight_layout()
    return fig


def tile_grid(pictures: list, tiles: list[dict], classes: list, path: Path, title: str) -> None:
    """One PNG of ``tile_figure``."""
    from ..train.plots import _pyplot

    fig = tile_figure(pictures, tiles, classes, title)
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)


__all__ = ["checkpoint_path", "explain_run", "load_run_model", "pick_tiles", "tile_figure", "tile_grid", "tile_title"]
