#!/usr/bin/env python
"""How the synthetic galaxies' difficulty was chosen: train the reference CNN and MLP on them.

The product bar (docs/product.md): the default small CNN reaches >= 90% validation accuracy
in a few minutes on 2 CPU cores, and the MLP baseline with the same budget ends at least 10
points lower. This script trains both with the recipe of the default job (AdamW, cosine
schedule with one warmup epoch, batch 128, per-channel normalisation, random flips), prints
per-epoch accuracy, wall time and images/second, and checks that colour and brightness alone
(logistic regression on per-channel mean and std) are near chance. It is standalone on
purpose (bare torch, no hpcnn trainer) so the numbers describe the data, not the trainer.

    .venv/bin/python scripts/calibrate_synthetic.py                       # CNN + MLP, defaults
    .venv/bin/python scripts/calibrate_synthetic.py --models cnn --channels 32 64 128 128
    .venv/bin/python scripts/calibrate_synthetic.py --speed-only          # generator img/s only
    .venv/bin/python scripts/calibrate_synthetic.py --tune-scales         # re-derive CLASS_SCALE
    .venv/bin/python scripts/calibrate_synthetic.py --contact-sheet /tmp/galaxies.png

Results and the numbers measured are in docs/data-synthetic.md.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def generator_speed(gen, size: int, n: int, repeats: int) -> float:
    """Best-of-``repeats`` images/second of ``gen.generate`` on one thread (best: other work shares the cores)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        gen.generate(256, size=size, seed=99)
        best = math.inf
        for r in range(repeats):
            start = time.perf_counter()
            gen.generate(n, size=size, seed=100 + r)
            best = min(best, time.perf_counter() - start)
    return n / best


def colour_brightness_features(images: np.ndarray) -> np.ndarray:
    pixels = images.reshape(len(images), -1, 3).astype(np.float32)
    return np.concatenate([pixels.mean(1), pixels.std(1)], axis=1)


def colour_only_accuracy(train, val) -> float:
    """Validation accuracy of a logistic regression on per-channel mean and std (colour + brightness)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(colour_brightness_features(train[0]), train[1])
    return float(clf.score(colour_brightness_features(val[0]), val[1]))


def class_brightness(gen, n: int = 4000, size: int = 64) -> np.ndarray:
    """Mean pixel value of the images of each class (the same galaxies every call: seed 7, test split)."""
    images, labels = gen.generate(n, size=size, seed=7, split="test")
    means = images.reshape(n, -1).mean(1)
    return np.array([means[labels == c].mean() for c in range(len(gen.CLASSES))])


def tune_class_scales(gen, rounds: int = 6, low: float = 0.6, high: float = 1.8) -> list[float]:
    """Adjust the generator's CLASS_SCALE towards equal mean brightness for every class.

    The generator fixes each galaxy's contrast (pixel std after the stretch), so what is left to
    equalise is how much of the image the light covers, which a class's size factor controls.
    Secant steps in log space per class, on the same galaxies every round (common random
    numbers keep it stable). Factors are kept within [low, high] so the classes still look like
    themselves; what a factor at its limit cannot equalise shows in the colour-only accuracy.
    """
    scales = np.array(gen.CLASS_SCALE, dtype=float)
    elasticity = np.full(len(scales), 0.3)
    previous = None
    for r in range(rounds):
        gen.CLASS_SCALE[:] = [round(float(s), 3) for s in scales]
        brightness = class_brightness(gen)
        target = float(np.median(brightness))
        print(f"round {r}: spread {brightness.max() - brightness.min():.2f}  scales {gen.CLASS_SCALE}  "
              f"brightness {np.round(brightness, 2).tolist()}", flush=True)
        if previous is not None:
            moved = np.abs(np.log(scales / previous[0])) > 1e-3
            slope = np.log(brightness / previous[1]) / np.where(moved, np.log(scales / previous[0]), 1.0)
            elasticity = np.where(moved, np.clip(slope, 0.05, 2.0), elasticity)
        previous = (scales.copy(), brightness)
        step = np.clip(np.log(target / brightness) / elasticity, -0.3, 0.3)
        scales = np.clip(scales * np.exp(step), low, high)
    return list(gen.CLASS_SCALE)


def contact_sheet(gen, path: str, per_class: int = 8, size: int = 64, zoom: int = 2) -> None:
    """One row per class (named on the left), ``per_class`` validation images each, saved as a PNG."""
    from PIL import Image, ImageDraw

    images, labels = gen.generate(per_class * len(gen.CLASSES) * 3, size=size, seed=0, split="val")
    label_w, cell = 130, size * zoom
    sheet = Image.new("RGB", (label_w + per_class * cell, len(gen.CLASSES) * cell), "black")
    draw = ImageDraw.Draw(sheet)
    for row, name in enumerate(gen.CLASSES):
        draw.text((6, row * cell + cell // 2 - 6), name, fill="white")
        for col, i in enumerate(np.flatnonzero(labels == row)[:per_class]):
            tile = Image.fromarray(images[i]).resize((cell, cell), Image.NEAREST)
            sheet.paste(tile, (label_w + col * cell, row * cell))
    sheet.save(path)
    print(f"contact sheet: {path}")


def build_model(kind: str, num_classes: int, size: int, channels):
    from torch import nn

    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, 512), nn.BatchNorm1d(512), nn.ReLU(),
                             nn.Dropout(0.3), nn.Linear(512, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(0.3),
                             nn.Linear(256, num_classes))
    layers, prev = [], 3
    for c in channels:
        layers += [nn.Conv2d(prev, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        prev = c
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.3), nn.Linear(prev, 256),
                         nn.ReLU(), nn.Dropout(0.3), nn.Linear(256, num_classes))


def train(kind: str, train_set, val_set, num_classes: int, args) -> dict:
    """One run of the default recipe; returns per-epoch validation accuracy and timings."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(args.train_seed)
    to_tensor = lambda a: torch.from_numpy(a).permute(0, 3, 1, 2).float()  # noqa: E731
    x_train, x_val = to_tensor(train_set[0]), to_tensor(val_set[0])
    mean, std = x_train.mean((0, 2, 3), keepdim=True), x_train.std((0, 2, 3), keepdim=True)
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    y_train, y_val = torch.from_numpy(train_set[1]), torch.from_numpy(val_set[1])
    model = build_model(kind, num_classes, x_train.shape[-1], args.channels)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    total, warmup = steps_per_epoch * args.epochs, steps_per_epoch

    def lr_factor(step):  # linear warmup from 10% over one epoch, then cosine down to 1%
        if step < warmup:
            return 0.1 + 0.9 * step / warmup
        t = (step - warmup) / max(1, total - warmup)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    history, train_time, start = [], 0.0, time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        t0 = time.perf_counter()
        for idx in torch.randperm(len(x_train)).split(args.batch):
            xb, yb = x_train[idx], y_train[idx]
            xb = torch.where((torch.rand(len(xb)) < 0.5)[:, None, None, None], xb.flip(3), xb)
            xb = torch.where((torch.rand(len(xb)) < 0.5)[:, None, None, None], xb.flip(2), xb)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        train_time += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            pred = torch.cat([model(xb).argmax(1) for xb in x_val.split(512)])
        acc = float((pred == y_val).float().mean())
        history.append(round(acc, 4))
        print(f"  {kind} epoch {epoch + 1:2d}/{args.epochs}  loss {loss.item():.3f}  val {acc:.4f}  "
              f"{time.perf_counter() - start:6.1f} s", flush=True)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (y_val.numpy(), pred.numpy()), 1)
    return {"model": kind, "val_accuracy": history[-1], "best_val_accuracy": max(history), "history": history,
            "wall_s": round(time.perf_counter() - start, 1),
            "train_img_per_s": round(len(x_train) * args.epochs / train_time, 1),
            "confusion": confusion.tolist()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--module", default="hpcnn.data.synthetic", help="generator module to calibrate")
    p.add_argument("--models", nargs="+", default=["cnn", "mlp"], choices=["cnn", "mlp"])
    p.add_argument("--channels", nargs="+", type=int, default=[16, 32, 64, 64])
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=6000)
    p.add_argument("--n-val", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=1234, help="data seed (the default job's data.split_seed)")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--speed-only", action="store_true", help="measure the generator and stop")
    p.add_argument("--tune-scales", action="store_true",
                   help="equalise the classes' mean brightness through their size factors, print CLASS_SCALE, stop")
    p.add_argument("--contact-sheet", metavar="PNG", help="save 8 example images per class to this PNG and stop")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()

    gen = importlib.import_module(args.module)
    if args.contact_sheet:
        contact_sheet(gen, args.contact_sheet, size=args.size)
        return 0
    if args.tune_scales:
        print(f"CLASS_SCALE = {tune_class_scales(gen)}")
        return 0
    results = {"args": vars(args), "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg()}
    for size in sorted({32, 64, 128, args.size}):
        results[f"generator_img_per_s_{size}"] = round(generator_speed(gen, size, 2048, 3), 1)
        print(f"generator, one thread, {size}x{size}: {results[f'generator_img_per_s_{size}']:.0f} img/s", flush=True)
    if not args.speed_only:
        t0 = time.perf_counter()
        train_set = gen.generate(args.n_train, size=args.size, seed=args.seed, split="train")
        val_set = gen.generate(args.n_val, size=args.size, seed=args.seed, split="val")
        print(f"generated {args.n_train} + {args.n_val} images in {time.perf_counter() - t0:.1f} s", flush=True)
        results["colour_only_accuracy"] = round(colour_only_accuracy(train_set, val_set), 4)
        print(f"colour/brightness-only logistic regression: {results['colour_only_accuracy']:.4f} "
              f"(chance {1 / len(gen.CLASSES):.4f})", flush=True)
        import torch

        torch.set_num_threads(args.threads)
        results["runs"] = [train(kind, train_set, val_set, len(gen.CLASSES), args) for kind in args.models]
        for run in results["runs"]:
            print(f"{run['model']}: val {run['val_accuracy']:.4f} (best {run['best_val_accuracy']:.4f}), "
                  f"{run['wall_s']:.0f} s, {run['train_img_per_s']:.0f} train img/s", flush=True)
    results["load_avg_at_end"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
