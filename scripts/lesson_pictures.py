"""Draw the pictures of docs/lessons.md from finished lesson runs (``hpcnn lessons ...`` first).

    hpcnn lessons jobs/lessons/shortcut.yaml                # ... and the other lessons: runs/lessons/<lesson>/
    python scripts/lesson_pictures.py --runs runs/lessons --out docs/img
    # docs/img was drawn from the tests' runs, the MLP-vs-CNN lesson at the tests' short setting:
    #   --runs /tmp/lesson-runs --set mlp_vs_cnn data.image_size=32 data.n_train=3000 train.epochs=8 train.threads=1

Runs are found under --runs by what they train (``hpcnn.lessons.find_run``), so the runs the tests keep
(``HPCNN_LESSON_RUNS=DIR pytest tests/integration/test_lessons.py``) serve as well.

Writes lesson_shortcut.png (Grad-CAM, shortcut model above, control below, the same test images),
lesson_overfitting.png, lesson_optimizers.png, lesson_penalties.png and lesson_mlp_vs_cnn.png
(curves from each run's metrics.jsonl); lessons whose runs are missing are skipped.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch


def history(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "val" in r and "epoch" in r]


def runs_of(lesson: Path, runs: Path, overrides=()) -> dict[str, Path]:
    """{task name: finished run dir} of a lesson's tasks found under ``runs`` (matched by what they train)."""
    from hpcnn.lessons import find_run, lesson_tasks

    found = {task.config.name: find_run(runs, task.config) for task in lesson_tasks(lesson, overrides)}
    return {name: run for name, run in found.items() if run is not None}


def curves(runs: dict[str, Path], out: Path, title: str, loss: bool = True) -> None:
    from hpcnn.train.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if loss else 1, figsize=(10 if loss else 6, 3.6), squeeze=False)
    families = list(dict.fromkeys(name.rsplit("_", 1)[0] if name.endswith(("_constant", "_cosine")) else name
                                  for name in runs))
    for name, run_dir in runs.items():
        h = history(run_dir)
        epochs = [r["epoch"] + 1 for r in h]
        family = name.rsplit("_", 1)[0] if name.endswith(("_constant", "_cosine")) else name
        colour = f"C{families.index(family) % 10}"  # one colour per optimizer: constant dashed, cosine solid
        style = "--" if name.endswith("constant") else "-"
        axes[0, 0].plot(epochs, [r["val"]["accuracy"] for r in h], style, color=colour, label=name)
        if loss:
            axes[0, 1].plot(epochs, [r["train"]["loss"] for r in h], ":", color=colour, label=f"{name} train")
            axes[0, 1].plot(epochs, [r["val"]["loss"] for r in h], "-", color=colour, label=f"{name} val")
    axes[0, 0].set(xlabel="epoch", ylabel="validation accuracy")
    axes[0, 0].legend(fontsize=7)
    if loss:
        axes[0, 1].set(xlabel="epoch", ylabel="loss", yscale="log")
        axes[0, 1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)


def shortcut(runs: dict[str, Path], out: Path, n: int = 8) -> None:
    """Grad-CAM on the same n test images: the shortcut model (top row), the control (bottom row)."""
    from hpcnn.explain import gradcam
    from hpcnn.explain.report import load_run_model, tile_grid
    from hpcnn.run import config_for_resume
    from hpcnn.train.inputs import job_inputs

    pictures, tiles = [], []
    for name in ("shortcut_marker", "shortcut_control"):
        cfg = config_for_resume(runs[name])
        splits, normalize = job_inputs(cfg, announce=False)
        model, _ = load_run_model(runs[name], cfg, splits.classes)
        idx = [int(torch.nonzero(splits.test.labels == c)[0]) for c in range(n)]
        x, y = splits.test.images[idx], splits.test.labels[idx]
        heat, logits, _ = gradcam(model, normalize(x))
        probs = torch.softmax(logits, 1)
        for j in range(n):
            pred = int(probs[j].argmax())
            tiles.append({"true": int(y[j]), "pred": pred, "prob": float(probs[j, pred])})
            pictures.append((x[j], heat[j]))
    short = {"smooth_round": "round", "smooth_inbetween": "in-between", "smooth_cigar": "cigar",
             "edge_on_disk": "edge-on", "barred_spiral": "barred"}
    classes = [short.get(c, c) for c in splits.classes]
    tile_grid(pictures, tiles, classes, out, "test images; top: trained WITH the corner marker, bottom: control")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/lessons")
    p.add_argument("--out", default="docs/img")
    p.add_argument("--set", nargs="+", action="append", default=[], metavar=("LESSON", "KEY=VALUE"),
                   help="the runs of LESSON were made with these overrides, e.g. --set mlp_vs_cnn train.epochs=8")
    args = p.parse_args()
    extra = {lesson: overrides for lesson, *overrides in args.set}
    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    found = {lesson: runs_of(Path("jobs/lessons") / f"{lesson}.yaml", runs, extra.get(lesson, ())) for lesson in
             ("shortcut", "overfitting", "optimizers", "penalties", "mlp_vs_cnn")}
    if len(found["shortcut"]) == 2:
        shortcut(found["shortcut"], out / "lesson_shortcut.png")
    titles = {"overfitting": "600 training galaxies: no remedy vs augmentation + dropout",
              "optimizers": "optimizers, constant (dashed) vs warmup + cosine (solid) learning rate",
              "penalties": "600 training galaxies: L2 / L1 weight penalties and early stopping (val loss)",
              "mlp_vs_cnn": "the same data and budget: CNN vs MLP"}
    for lesson, title in titles.items():
        if found[lesson]:
            curves(found[lesson], out / f"lesson_{lesson}.png", title, loss=lesson != "optimizers")
            print("wrote", out / f"lesson_{lesson}.png")


if __name__ == "__main__":
    main()
