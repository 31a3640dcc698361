"""Embedded synthetic galaxies: a seeded generator of morphology classes (Galaxy10-like).

Pure numpy, vectorised over a batch (thousands of 64x64 images per second on one core).
The class is carried by *shape* only: orientation, size, brightness, colour, sky level,
noise, PSF blur, centre offset and foreground stars are drawn from the same
distributions for every class, so neither colour nor brightness gives the answer away.

``generate(n, size, seed, split)`` is deterministic; each (seed, split) pair is its own
random stream, so train/val/test never share an image.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["smooth_round", "smooth_inbetween", "smooth_cigar", "edge_on_disk", "spiral", "barred_spiral",
           "ring", "merger"]
SPLITS = {"train": 0, "val": 1, "test": 2}
CHUNK = 512


def _u(rng, lo, hi, shape=None):
    """Uniform draws as float32: the whole renderer stays in single precision (2x faster)."""
    return rng.uniform(lo, hi, shape).astype(np.float32)


def _grid(rng, b: int, size: int):
    """Per-image rotated, offset coordinates in units of the image half-width."""
    lin = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    theta = _u(rng, 0, np.pi, (b, 1, 1))
    off = _u(rng, -0.08, 0.08, (b, 2, 1, 1))
    x, y = xx[None] - off[:, 0], yy[None] - off[:, 1]
    c, s = np.cos(theta), np.sin(theta)
    return x * c + y * s, -x * s + y * c


def _sersic(r, re, n):
    bn = 2 * n - 1 / 3
    return np.exp(-bn * ((r / re) ** (1 / n) - 1))


def _smooth(x, y, rng, q_lo, q_hi, re):
    b = x.shape[0]
    q = _u(rng, q_lo, q_hi, (b, 1, 1))
    n = _u(rng, 1.0, 3.0, (b, 1, 1))
    return _sersic(np.sqrt(x ** 2 + (y / q) ** 2) + 1e-6, re, n)


def _edge_on(x, y, rng, re):
    b = x.shape[0]
    h, z0 = re * _u(rng, 0.9, 1.3, (b, 1, 1)), re * _u(rng, 0.08, 0.15, (b, 1, 1))
    disk = np.exp(-np.abs(x) / h) / np.cosh(np.minimum(np.abs(y / z0), 20)) ** 2
    bulge = 0.3 * _sersic(np.sqrt(x ** 2 + (y / 0.7) ** 2) + 1e-6, 0.25 * re, 2.0)
    lane = 1 - _u(rng, 0.4, 0.8, (b, 1, 1)) * np.exp(-(y / (0.5 * z0)) ** 2) * (np.abs(x) < 1.3 * h)
    return (disk + bulge) * lane


def _disk(x, y, rng, re, bar: bool):
    b = x.shape[0]
    q = _u(rng, 0.55, 1.0, (b, 1, 1))
    yd = y / q
    r = np.sqrt(x ** 2 + yd ** 2) + 1e-6
    phi = np.arctan2(yd, x)
    pitch = np.tan(np.radians(_u(rng, 12, 28, (b, 1, 1))))
    arms = rng.choice([2, 2, 3], size=(b, 1, 1))
    r0 = 0.45 * re if not bar else re * _u(rng, 0.55, 0.8, (b, 1, 1))
    wind = np.log(np.maximum(r, r0) / r0) / pitch
    sharp = _u(rng, 3, 6, (b, 1, 1))
    pattern = ((1 + np.cos(arms * (phi - wind))) / 2) ** sharp
    h = re * _u(rng, 0.9, 1.2, (b, 1, 1))
    disk = np.exp(-r / h)
    img = disk * (0.25 + 1.6 * pattern * (r > 0.6 * r0)) + 0.8 * _sersic(r, 0.2 * re, 2.0)
    if bar:
        img += 1.2 * np.exp(-(x / r0) ** 4 - (yd / (0.22 * r0)) ** 2)
    return img


def _ring(x, y, rng, re):
    b = x.shape[0]
    q = _u(rng, 0.6, 1.0, (b, 1, 1))
    r = np.sqrt(x ** 2 + (y / q) ** 2) + 1e-6
    rr = re * _u(rng, 1.0, 1.5, (b, 1, 1))
    w = rr * _u(rng, 0.12, 0.2, (b, 1, 1))
    return np.exp(-((r - rr) / w) ** 2) + 0.9 * _sersic(r, 0.25 * re, 1.5)


def _merger(x, y, rng, re):
    b = x.shape[0]
    d = re * _u(rng, 0.9, 1.6, (b, 1, 1))
    ratio = _u(rng, 0.4, 1.0, (b, 1, 1))
    q1, q2 = _u(rng, 0.5, 1.0, (2, b, 1, 1))
    a = _sersic(np.sqrt((x + d / 2) ** 2 + (y / q1) ** 2) + 1e-6, 0.55 * re, 1.5)
    c = ratio * _sersic(np.sqrt((x - d / 2) ** 2 + (y / q2) ** 2) + 1e-6, 0.45 * re, 1.5)
    # a tidal tail: a curved stream leaving the second body
    t = np.linspace(0, 1, 24, dtype=np.float32)[None, :]
    bend = _u(rng, 0.8, 1.6, (b, 1)) * rng.choice([-1, 1], size=(b, 1))
    r2 = re[:, :, 0]
    tx = (d[:, :, 0] / 2) + t * 2.2 * r2
    ty = bend * (t * 1.4 * r2) ** 2 / r2
    tail = np.zeros_like(x)
    width = 0.22 * re
    for k in range(0, 20, 4):
        dx = x - tx[:, k, None, None]
        dy = y - ty[:, k, None, None]
        tail += (1 - t[0, k]) * np.exp(-(dx ** 2 + dy ** 2) / (2 * width ** 2))
    return a + c + 0.35 * tail


def _render_class(cls: int, x, y, rng, re):
    if cls == 0:
        return _smooth(x, y, rng, 0.82, 1.0, re)
    if cls == 1:
        return _smooth(x, y, rng, 0.5, 0.68, re)
    if cls == 2:
        return _smooth(x, y, rng, 0.2, 0.38, re)
    if cls == 3:
        return _edge_on(x, y, rng, re)
    if cls in (4, 5):
        return _disk(x, y, rng, re, bar=cls == 5)
    if cls == 6:
        return _ring(x, y, rng, re)
    return _merger(x, y, rng, re)


def _psf_blur(img, sigma_px):
    """Gaussian PSF with a per-image width: separable, as two batched matrix products."""
    size = img.shape[-1]
    pos = np.arange(size, dtype=np.float32)
    d2 = (pos[:, None] - pos[None, :]) ** 2
    k = np.exp(-d2[None] / (2 * sigma_px.astype(np.float32)[:, None, None] ** 2))
    k /= k.sum(-1, keepdims=True)
    img = img.astype(np.float32)
    return k @ img @ k.transpose(0, 2, 1)


def _chunk(rng, labels: np.ndarray, size: int) -> np.ndarray:
    b = len(labels)
    x, y = _grid(rng, b, size)
    re = _u(rng, 0.16, 0.34, (b, 1, 1))
    layers = np.zeros((2, b, size, size), dtype=np.float32)  # [0] the galaxy, [1] foreground stars (point sources)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        layers[0, idx] = _render_class(int(cls), x[idx], y[idx], rng, re[idx])
    sigma = _u(rng, 0.6, 1.6, b) * size / 64
    n_stars = rng.poisson(1.5, b)
    for i in np.flatnonzero(n_stars):
        pos = rng.integers(0, size, (n_stars[i], 2))
        layers[1, i, pos[:, 0], pos[:, 1]] += _u(rng, 0.15, 0.9, n_stars[i]) * 2 * np.pi * sigma[i] ** 2
    gal, stars = _psf_blur(layers.reshape(2 * b, size, size), np.concatenate([sigma, sigma])).reshape(2, b, size, size)
    gal *= (_u(rng, 0.5, 1.0, (b, 1, 1)) / gal.reshape(b, -1).max(1)[:, None, None]).astype(np.float32)
    f32 = np.float32
    colour = _u(rng, 0.55, 1.0, (b, 1, 1, 3)).astype(f32)     # one colour law for every class
    star_colour = _u(rng, 0.5, 1.0, (b, 1, 1, 3)).astype(f32)
    rgb = gal[..., None] * colour + np.maximum(stars, 0)[..., None] * star_colour
    rgb += _u(rng, 0.0, 0.04, (b, 1, 1, 1)).astype(f32)       # sky
    noise = rng.standard_normal(rgb.shape, dtype=f32)
    noise *= _u(rng, 0.01, 0.04, (b, 1, 1, 1)).astype(f32)
    rgb += noise
    stretch = f32(8.0)                                             # asinh stretch shows faint structure
    np.clip(rgb, 0, None, out=rgb)
    rgb = np.arcsinh(stretch * rgb) * f32(255 / np.arcsinh(8.0)) + f32(0.5)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def generate(n: int, size: int = 64, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (N,H,W,3) uint8 and labels (N,) int64, balanced over CLASSES."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not 16 <= size <= 256:
        raise ValueError(f"size must be between 16 and 256, got {size}")
    label_rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], 7]))
    labels = label_rng.permutation(np.arange(n) % len(CLASSES)).astype(np.int64)
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    for k, start in enumerate(range(0, n, CHUNK)):
        rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], k]))
        images[start:start + CHUNK] = _chunk(rng, labels[start:start + CHUNK], size)
    return images, labels


def write_image_folder(out_dir, n: int, size: int = 64, seed: int = 0, split_fractions: dict | None = None,
                       fmt: str = "png") -> dict:
    """Write a class-per-folder tree: OUT/<split>/<class>/NNNNNN.png (or OUT/<class>/ without splits)."""
    from PIL import Image

    out = Path(out_dir)
    fractions = split_fractions or {"": 1.0}
    counts: dict = {"root": str(out), "format": fmt, "size": size, "splits": {}}
    for split, frac in fractions.items():
        m = int(round(n * frac))
        images, labels = generate(m, size=size, seed=seed, split=split or "train")
        base = out / split if split else out
        for name in CLASSES:
            (base / name).mkdir(parents=True, exist_ok=True)
        for i, (img, lab) in enumerate(zip(images, labels)):
            Image.fromarray(img).save(base / CLASSES[lab] / f"{i:06d}.{fmt}", **({"quality": 92} if fmt == "jpg" else {}))
        counts["splits"][split or "all"] = m
    return counts
