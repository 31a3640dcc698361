"""Embedded synthetic galaxies: a seeded generator of morphology classes in the spirit of Galaxy10 DECaLS.

Why: the default job, the tests and the course examples need an image data set that ships with
the code, downloads nothing, and is a real vision task. The class is carried by *shape* only:
orientation, size, inclination, contrast, colour, sky level, noise, PSF blur, centre offset and
foreground stars are drawn from the same distributions for every class, so a model cannot
shortcut through colour or brightness. A small CNN learns it; an MLP of the same budget does not.

Pure numpy (no torch: the login node may not have it), vectorised over batches of images:
thousands of 64x64 images per second on one core. ``generate(n, size, seed, split)`` is
deterministic; every (seed, split) pair is its own random stream, so train, val and test never
share an image; a shorter request is a prefix of a longer one; and the galaxies' parameters do
not depend on ``size``. docs/data-synthetic.md lists the classes and how the difficulty was
calibrated (scripts/calibrate_synthetic.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ConfigError

CLASSES = ["smooth_round", "smooth_inbetween", "smooth_cigar", "edge_on_disk", "spiral", "barred_spiral",
           "ring", "merger"]
SPLITS = ("train", "val", "test")
MIN_SIZE, MAX_SIZE = 16, 256
BLOCK = 128          # images per random stream (parameters are drawn a block at a time)
MAX_STARS = 6        # star slots drawn per image (the Poisson count switches them on)
F32 = np.float32


class GeneratorArgumentError(ConfigError, ValueError):
    """A bad argument to the generator (also a ValueError, for callers that catch the builtin)."""


# Nuisances, identical for every class. Lengths are in units of the image half-width, so any
# image size shows the same field of view; the PSF width is given for 64 px and scales with size.
SCALE_LOG_RANGE = (np.log(0.22), np.log(0.4))    # visible radius of the galaxy, log-uniform
CENTRE_OFFSET = 0.2
PSF_SIGMA_64 = (0.6, 1.5)
CONTRAST_RANGE = (20.0, 50.0)                   # std of the noise-free galaxy after the stretch, uint8 levels
SKY_RANGE = (0.0, 0.06)
NOISE_RANGE = (0.008, 0.03)                     # sky noise sigma per pixel and channel
SHOT_NOISE = 0.0015                             # extra noise variance per unit of signal
STARS_MEAN = 1.6
STAR_PEAK_LOG_RANGE = (np.log(0.05), np.log(1.5))
STRETCH = 10.0                                  # asinh stretch: faint structure stays visible
TABLE_STEPS = 4096                              # the stretch is a lookup table over flux 0..1
LN20 = float(np.log(20.0))                      # profiles fall to 5% of their peak at their radius

# Shape parameters: name -> (low, high), drawn uniformly for every image of a block, whatever its class
# (so the random stream does not depend on the labels). Lengths are in units of the galaxy's scale.
SHAPE_PARAMS = {
    "sersic_n": (0.8, 2.5), "q_round": (0.84, 1.0), "q_between": (0.45, 0.68), "q_cigar": (0.22, 0.4),
    "disk_q": (0.45, 1.0), "pitch_deg": (12.0, 30.0), "arm_contrast": (0.8, 2.0), "arm_sharpness": (2.0, 5.0),
    "arm_phase": (0.0, 2 * np.pi), "arm_start": (0.3, 0.5), "bulge": (0.5, 1.2),
    "bar_len": (0.55, 0.85), "bar_width": (0.15, 0.25), "bar_strength": (1.2, 1.8), "bar_angle": (0.0, np.pi),
    "edge_q": (0.08, 0.15), "edge_bulge": (0.0, 0.7), "lane_depth": (0.0, 0.85), "lane_offset": (-0.4, 0.4),
    "ring_radius": (0.65, 0.95), "ring_width": (0.15, 0.28), "ring_core": (0.6, 1.2), "ring_amp": (0.4, 0.9),
    "lens": (0.0, 0.08), "ring_disk": (0.0, 0.12),
    "pair_sep": (1.2, 2.0), "pair_ratio": (0.45, 1.0), "pair_q2": (0.5, 1.0), "pair_angle2": (0.0, np.pi),
    "tail_pitch_deg": (30.0, 55.0), "tail_strength": (0.08, 0.22), "tail_phase": (0.0, 2 * np.pi),
}
INTEGER_PARAMS = {"arms": (2, 2, 2, 3), "tails": (1, 1, 2), "chirality": (-1, 1)}


def _profile(r2, radius, n):
    """Sersic-like profile with peak 1 that falls to 5% at ``radius``: exp(-ln20 (r/radius)^(1/n))."""
    return np.exp(-LN20 * np.exp(np.log(r2 / (radius * radius) + 1e-8) * (0.5 / n)))


def _rotate(x, y, angle):
    c, s = np.cos(angle), np.sin(angle)
    return x * c + y * s, y * c - x * s


def _harmonic(x, y, r, m):
    """cos(m*phi), sin(m*phi) of the polar angle for per-image m in {1, 2, 3}, without arctan2."""
    c1, s1 = x / r, y / r
    c2, s2 = c1 * c1 - s1 * s1, 2.0 * c1 * s1
    c3, s3 = c1 * c2 - s1 * s2, s1 * c2 + c1 * s2
    return (np.where(m == 1, c1, np.where(m == 2, c2, c3)), np.where(m == 1, s1, np.where(m == 2, s2, s3)))


def _spiral(x, y, r, m, pitch_deg, chirality, phase, r_start, sharpness):
    """m logarithmic spiral arms starting at r_start (values in [0, 1]): cos(m*phi - m*wind + phase)."""
    cm, sm = _harmonic(x, y, r, m)
    wind = chirality * np.log(np.maximum(r, r_start) / r_start) / np.tan(np.radians(pitch_deg))
    theta = phase - m * wind
    wave = 0.5 + 0.5 * (cm * np.cos(theta) - sm * np.sin(theta))
    return np.exp(sharpness * np.log(wave + 1e-6)) * (1.0 - np.exp(-(r / r_start) ** 2))


def _smooth(q_key):
    def render(x, y, s, p):
        return _profile(x * x + (y / p[q_key]) ** 2, s, p["sersic_n"])
    return render


def _edge_on(x, y, s, p):
    h = 0.5 * s
    z0 = p["edge_q"] * 3.0 * h
    disk = np.exp(-np.abs(x) / h - (y / z0) ** 2)
    bulge = p["edge_bulge"] * _profile(x * x + (y / 0.75) ** 2, 0.45 * s, 2.0)
    lane = 1.0 - p["lane_depth"] * np.exp(-((y - p["lane_offset"] * z0) / (0.45 * z0)) ** 2 - (x / (3.0 * h)) ** 4)
    return (disk + bulge) * lane


def _disk(x, y, s, p, barred: bool):
    yd = y / p["disk_q"]
    r = np.sqrt(x * x + yd * yd) + 1e-6
    h = 0.5 * s
    bulge = p["bulge"] * _profile(x * x + y * y / p["disk_q"], 0.3 * s, 2.0)   # a spheroid: rounder than the disk
    if barred:  # the arms start at the bar's ends
        bulge *= 0.45
        length = p["bar_len"] * s
        xb, yb = _rotate(x, yd, p["bar_angle"])
        bar = p["bar_strength"] * np.exp(-(xb / length) ** 4 - (yb / (p["bar_width"] * length)) ** 2)
        phase, start = -p["arms"] * p["bar_angle"], length
    else:
        bar, phase, start = 0.0, p["arm_phase"], p["arm_start"] * s
    arms = _spiral(x, yd, r, p["arms"], p["pitch_deg"], p["chirality"], phase, start, p["arm_sharpness"])
    return np.exp(-r / h) * (0.5 + p["arm_contrast"] * arms) + bulge + bar


def _ring(x, y, s, p):
    yd = y / p["disk_q"]
    r2 = x * x + yd * yd
    radius = p["ring_radius"] * s
    ring = np.exp(-((np.sqrt(r2) - radius) / (p["ring_width"] * radius)) ** 2)
    lens = p["lens"] * np.exp(-(r2 / (radius * radius)) ** 2)
    disk = p["ring_disk"] * np.exp(-np.sqrt(r2) / (0.4 * radius))
    return p["ring_amp"] * ring + lens + disk + p["ring_core"] * _profile(r2, 0.35 * s, 2.0)


def _merger(x, y, s, p):
    sep = p["pair_sep"] * s
    w1 = 1.0 / (1.0 + p["pair_ratio"])                  # the pair's centre of light sits at the origin
    x1, x2 = x + sep * (1.0 - w1), x - sep * w1
    a = _profile(x1 * x1 + (y / 0.85) ** 2, 0.45 * s, 2.0)
    u, v = _rotate(x2, y, p["pair_angle2"])
    b = p["pair_ratio"] * _profile(u * u + (v / p["pair_q2"]) ** 2, 0.4 * s, 2.0)
    r = np.sqrt(x * x + y * y) + 1e-6
    start = 0.5 * sep
    tail = _spiral(x, y, r, p["tails"], p["tail_pitch_deg"], p["chirality"], p["tail_phase"], start, 6.0)
    tail *= np.exp(-r / (0.6 * s)) * (1.0 - np.exp(-(r / start) ** 4))
    return a + b + p["tail_strength"] * 2.0 * tail


# Per-class size factors. Every galaxy's contrast is fixed (see _amplitude); these factors then bring the
# classes' mean brightness together (scripts/calibrate_synthetic.py --tune-scales, kept within 0.6..1.8).
CLASS_SCALE = [0.6, 0.8, 1.2, 1.8, 0.99, 1.1, 1.5, 0.75]

RENDERERS = [_smooth("q_round"), _smooth("q_between"), _smooth("q_cigar"), _edge_on,
             lambda x, y, s, p: _disk(x, y, s, p, barred=False), lambda x, y, s, p: _disk(x, y, s, p, barred=True),
             _ring, _merger]


def _uniform(rng, lo, hi, shape=BLOCK):
    return rng.uniform(lo, hi, shape).astype(F32)


def _colours(rng, shape):
    """One colour law for every class: a temperature from red to blue, jittered, mean channel = 1."""
    t = _uniform(rng, -1.0, 1.0, shape)[..., None]
    base = np.array([1.0, 0.95, 0.85], F32) + t * np.array([0.25, 0.0, -0.25], F32)
    rgb = base * _uniform(rng, 0.85, 1.15, (*shape, 3))
    return rgb / rgb.mean(-1, keepdims=True)


def _gaussian_rows(centres, sigma, size):
    """(m, K) centres in pixels -> (m, size, K) unit-peak Gaussian profiles along one axis."""
    pos = np.arange(size, dtype=F32)[:, None]
    return np.exp(-((pos - centres[:, None, :]) ** 2) / (2.0 * sigma[:, None, None] ** 2))


def _psf_matrices(sigma, size):
    """Per-image 1-D Gaussian blur as a (size x size) matrix: blur = K @ img @ K.T."""
    k = _gaussian_rows(np.broadcast_to(np.arange(size, dtype=F32), (len(sigma), size)), sigma, size)
    return k / k.sum(1, keepdims=True)


def _stretch_table():
    """uint8 value of linear flux i/TABLE_STEPS under the asinh stretch (flux >= 1 saturates)."""
    flux = np.arange(TABLE_STEPS + 1, dtype=np.float64) / TABLE_STEPS
    return np.round(np.arcsinh(STRETCH * flux) / np.arcsinh(STRETCH) * 255).astype(np.uint8)


def _normal_table():
    """256 quantiles of the standard normal: random bytes -> Gaussian noise by lookup (several x faster)."""
    grid = np.linspace(-6.0, 6.0, 200001)
    cdf = np.cumsum(np.exp(-0.5 * grid * grid))
    cdf = (cdf - cdf[0]) / (cdf[-1] - cdf[0])
    return np.interp((np.arange(256) + 0.5) / 256, cdf, grid).astype(F32)


_STRETCH_TABLE, _NORMAL_TABLE = _stretch_table(), _normal_table()


def _amplitude(gal, contrast):
    """Per-image flux scale at which the stretched galaxy's pixel std equals ``contrast``.

    Why: at equal peak brightness a ring or a spiral has more contrast than a smooth galaxy, and
    a colour/brightness-only classifier would pick that up. Bisection in log flux on a 16x16
    subsample (the std grows with the flux until most of the image saturates, far beyond this range).
    """
    m, size = len(gal), gal.shape[-1]
    step = max(1, size // 16)
    peak = np.maximum(gal.reshape(m, -1).max(1), F32(1e-12))
    sample = gal[:, ::step, ::step].reshape(m, -1) / peak[:, None]
    lo, hi = np.full(m, np.log(0.03), F32), np.full(m, np.log(3.0), F32)
    for _ in range(9):
        mid = (lo + hi) * F32(0.5)
        flux = np.clip(sample * (np.exp(mid) * F32(TABLE_STEPS))[:, None], 0, TABLE_STEPS).astype(np.uint16)
        above = np.take(_STRETCH_TABLE, flux).astype(F32).std(1) > contrast
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return np.exp((lo + hi) * F32(0.5)) / peak


def _draw_block(rng):
    """Every random parameter of one block (labels included), in a fixed order."""
    p = {k: _uniform(rng, lo, hi) for k, (lo, hi) in SHAPE_PARAMS.items()}
    p.update({k: rng.choice(np.array(v, F32), BLOCK) for k, v in INTEGER_PARAMS.items()})
    blocks = -(-BLOCK // len(CLASSES))
    common = {
        "labels": np.concatenate([rng.permutation(len(CLASSES)) for _ in range(blocks)])[:BLOCK],
        "angle": _uniform(rng, 0.0, 2 * np.pi), "offset": _uniform(rng, -CENTRE_OFFSET, CENTRE_OFFSET, (BLOCK, 2)),
        "scale": np.exp(_uniform(rng, *SCALE_LOG_RANGE)), "psf": _uniform(rng, *PSF_SIGMA_64),
        "contrast": _uniform(rng, *CONTRAST_RANGE), "colour": _colours(rng, (BLOCK,)),
        "sky": _uniform(rng, *SKY_RANGE), "noise": _uniform(rng, *NOISE_RANGE),
        "n_stars": rng.poisson(STARS_MEAN, BLOCK), "star_xy": _uniform(rng, 0.0, 1.0, (BLOCK, 2, MAX_STARS)),
        "star_peak": np.exp(_uniform(rng, *STAR_PEAK_LOG_RANGE, (BLOCK, MAX_STARS))),
        "star_colour": _colours(rng, (BLOCK, MAX_STARS)),
    }
    return p, common


def _galaxies(labels, c, shape_p, size):
    """Noise-free, unblurred surface brightness (m, size, size), one vectorised call per class."""
    lin = (np.arange(size, dtype=F32) + 0.5) / size * 2.0 - 1.0
    gal = np.empty((len(labels), size, size), F32)
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        col = lambda a: a[idx][:, None, None]  # noqa: E731
        x, y = _rotate(lin[None, None, :] - col(c["offset"][:, 0]), lin[None, :, None] - col(c["offset"][:, 1]),
                       col(c["angle"]))
        scale = col(c["scale"]) * F32(CLASS_SCALE[cls])
        gal[idx] = RENDERERS[cls](x, y, scale, {k: col(v) for k, v in shape_p.items()})
    return gal


def _render_batch(rng, c, shape_p, size: int) -> np.ndarray:
    """Images (b, size, size, 3) uint8 for one batch of drawn parameters; the noise is drawn here."""
    gal = _galaxies(c["labels"], c, shape_p, size)
    sigma = c["psf"] * F32(size / 64)
    k = _psf_matrices(sigma, size)
    gal = np.matmul(np.matmul(k, gal), k.transpose(0, 2, 1))
    gal *= (_amplitude(gal, c["contrast"]) * F32(TABLE_STEPS))[:, None, None]   # flux in lookup-table steps
    rgb = gal[:, None] * c["colour"][:, :, None, None]                           # planar (b, 3, H, W)
    star_flux = (np.arange(MAX_STARS)[None, :] < c["n_stars"][:, None]) * c["star_peak"] * F32(TABLE_STEPS)
    rows = _gaussian_rows(c["star_xy"][:, 1] * F32(size), sigma, size)            # (b, H, K)
    cols = _gaussian_rows(c["star_xy"][:, 0] * F32(size), sigma, size).transpose(0, 2, 1)
    star_rgb = star_flux[:, None] * c["star_colour"].transpose(0, 2, 1)                # (b, 3, K)
    rgb += np.matmul(rows[:, None] * star_rgb[:, :, None], cols[:, None])
    luminance = gal + np.matmul(rows * star_flux[:, None], cols)                  # star colours have mean 1
    noise = F32(TABLE_STEPS) * c["noise"][:, None, None, None]
    sd = np.sqrt(noise * noise + F32(SHOT_NOISE * TABLE_STEPS) * luminance[:, None])
    count = rgb.size
    draws = rng.bit_generator.random_raw(-(-count // 8)).view(np.uint8)[:count]
    z = np.take(_NORMAL_TABLE, draws).reshape(rgb.shape)
    z *= sd
    rgb += z
    rgb += (F32(TABLE_STEPS) * c["sky"])[:, None, None, None]
    np.clip(rgb, 0, TABLE_STEPS, out=rgb)
    return np.take(_STRETCH_TABLE, rgb.astype(np.uint16)).transpose(0, 2, 3, 1)


def _render_block(rng, m: int, size: int):
    """The first ``m`` images and labels of one block's random stream.

    All parameters are drawn at full block width first, then the noise batch by batch in image
    order, so a shorter request gets exactly the first images of a longer one. Batches shrink for
    large images to keep the working set in cache.
    """
    shape_p, c = _draw_block(rng)
    batch = int(np.clip(BLOCK * 64 * 64 // (size * size), 1, BLOCK))
    images = np.empty((m, size, size, 3), np.uint8)
    for start in range(0, m, batch):
        part = slice(start, min(m, start + batch))
        images[part] = _render_batch(rng, {k: v[part] for k, v in c.items()},
                                     {k: v[part] for k, v in shape_p.items()}, size)
    return images, c["labels"][:m].astype(np.int64)


def _check(n: int, size: int, seed: int, split: str) -> None:
    where = "hpcnn.data.synthetic.generate"
    if split not in SPLITS:
        raise GeneratorArgumentError(f"unknown split {split!r}", where, f"use one of {', '.join(SPLITS)}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise GeneratorArgumentError(f"image size {size} is out of range", where, f"use {MIN_SIZE}..{MAX_SIZE} pixels")
    if int(n) < 0 or int(seed) < 0:
        raise GeneratorArgumentError(f"n and seed must be >= 0, got n={n}, seed={seed}", where)


def _blocks(n: int, size: int, seed: int, split: str):
    """Yield (start, images, labels) block by block: block k of (seed, split) is its own random stream."""
    for k, start in enumerate(range(0, n, BLOCK)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), SPLITS.index(split), k]))
        yield (start, *_render_block(rng, min(BLOCK, n - start), int(size)))


def generate(n: int, size: int = 64, seed: int = 0, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """``n`` galaxies as uint8 (n, size, size, 3) and int64 labels (n,) indexing CLASSES.

    The same arguments give the same arrays; each (seed, split) is a separate stream, and the
    first m images of a request for n > m are the m images of a request for m. Labels come in
    shuffled blocks of len(CLASSES), so any prefix is balanced to within one image per class.
    """
    _check(n, size, seed, split)
    images = np.empty((n, size, size, 3), np.uint8)
    labels = np.empty(n, np.int64)
    for start, block_images, block_labels in _blocks(n, size, seed, split):
        images[start:start + len(block_labels)] = block_images
        labels[start:start + len(block_labels)] = block_labels
    return images, labels


def _split_counts(n: int, split_fractions) -> dict:
    where = "hpcnn.data.synthetic.write_image_folder"
    if not split_fractions:
        return {"": n}
    unknown = set(split_fractions) - set(SPLITS)
    total = sum(split_fractions.values())
    if unknown or any(f < 0 for f in split_fractions.values()) or not 0 < total <= 1 + 1e-9:
        raise GeneratorArgumentError(f"invalid split_fractions {split_fractions!r}", where,
                                     f"keys from {', '.join(SPLITS)}, fractions >= 0 summing to at most 1")
    counts = {s: int(round(n * f)) for s, f in split_fractions.items()}
    if abs(total - 1) < 1e-9:  # fractions that add up to one use every image
        largest = max(counts, key=lambda s: split_fractions[s])
        counts[largest] += n - sum(counts.values())
    return counts


def write_image_folder(out_dir, n: int, size: int = 64, seed: int = 0, split_fractions: dict | None = None,
                       fmt: str = "png") -> dict:
    """Write ``n`` galaxies as image files, one folder per class, and return the counts.

    Layout without splits: ``out_dir/<class>/img_000000.png``, all from the train stream. With
    ``split_fractions`` such as ``{"train": 0.7, "val": 0.15, "test": 0.15}``:
    ``out_dir/<split>/<class>/img_000000.png``, each split from its own stream (the same images
    ``generate`` returns for it; the number in a name is the image's index in that stream).
    Every class folder is created, even if empty. ``out_dir`` must be empty or not exist yet.
    """
    from PIL import Image

    where = "hpcnn.data.synthetic.write_image_folder"
    if fmt not in ("png", "jpg"):
        raise GeneratorArgumentError(f"unsupported image format {fmt!r}", where, "use png (lossless) or jpg")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GeneratorArgumentError(f"output folder {out} exists and is not empty", where,
                                     "choose a new folder, or delete this one first")
    _check(n, size, seed, "train")
    counts = _split_counts(int(n), split_fractions)
    per_class = {}
    for split, m in counts.items():
        base = out / split if split else out
        for name in CLASSES:
            (base / name).mkdir(parents=True, exist_ok=True)
        tally = dict.fromkeys(CLASSES, 0)
        for start, images, labels in _blocks(m, size, seed, split or "train"):
            for i, (image, label) in enumerate(zip(images, labels)):
                name = CLASSES[label]
                path = base / name / f"img_{start + i:06d}.{fmt}"
                Image.fromarray(image).save(path, **({"quality": 95} if fmt == "jpg" else {}))
                tally[name] += 1
        per_class[split or "all"] = tally
    return {"root": str(out), "layout": "<split>/<class>/" if split_fractions else "<class>/", "format": fmt,
            "size": int(size), "seed": int(seed), "splits": {s: sum(t.values()) for s, t in per_class.items()},
            "per_class": per_class}
