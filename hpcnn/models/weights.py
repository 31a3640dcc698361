"""Pretrained weights: fetched on a login node (verified, atomic), listed, loaded at job start.

Names, the cache layout and the file a job reads are torch-free (``hpcnn.config.weights_names``,
shared with the login-node pre-flight); this module does what needs the network or torch:

* ``fetch`` downloads one torchvision weights file into ``<cache>/hub/checkpoints/`` (the
  TORCH_HOME layout, so torchvision finds it too) from download.pytorch.org or a mirror, checks
  the SHA-256 prefix the file name carries (as torch.hub's ``check_hash`` does) and the
  announced length, and writes through ``hpcnn.files.atomic_write``: a failed, truncated or
  corrupt download leaves nothing in the cache.
* ``initial_weights`` loads ``model.weights`` (a cached name, a file, a run directory) into a
  built model with ``torch.load(weights_only=True)`` and reports what matched (``loading``).
* ``weights_normalization`` gives the mean/std of the weights' own preprocessing.
Jobs only read: nothing here is called with the network in a job.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..config.weights_names import (MIRROR_ENV, WeightsRef, checkpoints_dir, is_weights_name, refs_for_file,
                                    run_dir_model_name, weights_ref, weights_source)
from ..errors import WeightsError
from ..files import atomic_write
from .loading import load_matching, read_state_dict
from .parts import head_name

CHUNK = 1 << 20
DEFAULT_TIMEOUT_S = 60.0


# ---------------------------------------------------------------- fetching (login node)
def _chunks(response, url: str):
    while True:
        try:
            chunk = response.read(CHUNK)
        except (OSError, http.client.HTTPException) as err:
            raise WeightsError(f"download interrupted: {err}", url,
                               "nothing was written to the cache; fetch again") from None
        if not chunk:
            return
        yield chunk


def download(url: str, dest: Path, hash_prefix: str, timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """``url`` -> ``dest``, all or nothing: the SHA-256 must start with ``hash_prefix`` and the length must match."""
    if not hash_prefix:
        raise WeightsError(f"{dest.name} carries no SHA-256 prefix in its name: it cannot be verified", url)

    def write(f) -> None:
        sha, got = hashlib.sha256(), 0
        try:
            response = urllib.request.urlopen(url, timeout=timeout)
        except (OSError, http.client.HTTPException, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            raise WeightsError(f"cannot download {dest.name}: {reason}", url,
                               f"run this on a login node with internet, or point --mirror / ${MIRROR_ENV} at a "
                               "site copy") from None
        with response:
            length = response.headers.get("Content-Length")
            for chunk in _chunks(response, url):
                sha.update(chunk)
                f.write(chunk)
                got += len(chunk)
        if length and length.isdigit() and got != int(length):
            raise WeightsError(f"truncated download of {dest.name}: got {got} of {int(length)} bytes", url,
                               "nothing was written to the cache; fetch again")
        digest = sha.hexdigest()
        if not digest.startswith(hash_prefix):
            raise WeightsError(f"{dest.name} is corrupt: its SHA-256 starts {digest[:len(hash_prefix)]}, its name says "
                               f"{hash_prefix}", url, "nothing was written to the cache; fetch again, and if it "
                               "repeats, the mirror holds another file under that name")

    return atomic_write(dest, write)


def fetch(ref: WeightsRef, cache: str | os.PathLike, mirror: str | None = None,
          timeout: float = DEFAULT_TIMEOUT_S) -> tuple[Path, bool]:
    """Put ``ref``'s file into ``cache`` unless it is there: (path, downloaded now).

    ``mirror`` (else $HPCNN_WEIGHTS_MIRROR) replaces https://download.pytorch.org/models/: a URL
    or a directory holding the files under their torchvision names.
    """
    dest = checkpoints_dir(cache) / ref.file_name
    if dest.is_file():
        return dest, False
    download(ref.source_url(mirror or os.environ.get(MIRROR_ENV)), dest, ref.hash_prefix, timeout)
    return dest, True


@dataclass(frozen=True)
class CachedFile:
    path: Path
    size: int
    refs: tuple  # the WeightsRefs stored in this file; empty when not recognised


def cached_files(cache: str | os.PathLike) -> list[CachedFile]:
    """The weights files in ``cache`` (temporary files of a running fetch are hidden ones: not listed)."""
    directory = checkpoints_dir(cache)
    if not directory.is_dir():
        return []
    return [CachedFile(p, p.stat().st_size, tuple(refs_for_file(p.name))) for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.startswith(".")]


# ---------------------------------------------------------------- using them (job start)
def _weights_enum_value(ref: WeightsRef):
    import torchvision.models as tvm

    return tvm.get_model_weights(ref.model)[ref.entry]


def builder_kwargs(name: str, weights: str | None) -> dict:
    """Constructor arguments that make the architecture the one torchvision builds for these weights.

    torchvision's builders change a few models for their pretrained weights (the input transform of
    GoogLeNet/Inception, the image size of ViT/MaxViT); hpcnn builds them the same way. Auxiliary
    classifiers are always off: hpcnn trains one output.
    """
    kwargs: dict = {"aux_logits": False, "init_weights": True} if name in ("googlenet", "inception_v3") else {}
    if not is_weights_name(weights):
        return kwargs
    meta = _weights_enum_value(weights_ref(name, weights)).meta
    if name in ("googlenet", "inception_v3"):
        kwargs.update(transform_input=True, init_weights=False)
    elif name.startswith("vit_"):
        kwargs["image_size"] = meta["min_size"][0]
    elif name == "maxvit_t":
        kwargs["input_size"] = meta["min_size"]
    return kwargs


def initial_weights(model, model_cfg, classes: list | None = None) -> dict | None:
    """Load ``model.weights`` into ``model`` (head already sized for the task); the report, or None for random init.

    A head trained on other classes (an hpcnn run on another task) is not loaded even when its shape
    fits: its outputs would mean other things. It is reported as skipped.
    """
    from ..rundir import read_summary, run_of_checkpoint

    path = weights_source(model_cfg)
    if path is None:
        return None
    state = read_state_dict(path)
    run_dir = run_of_checkpoint(Path(path))  # an hpcnn run's summary.json names the classes it was trained on
    trained_for = (read_summary(run_dir) or {}).get("classes") if run_dir is not None else None
    other = {}
    if classes is not None and trained_for is not None and list(trained_for) != list(classes):
        head = head_name(model) + "."
        other = {k: "(head trained for other classes)" for k in state if k.startswith(head)}
    return load_matching(model, state, path, model_cfg.name, trained_as=run_dir_model_name(path), exclude=other)


def weights_preprocessing(model_cfg) -> dict | None:
    """The preprocessing torchvision weights were trained with (their ``transforms()``), or None.

    Keys: weights, mean, std, resize_size, crop_size, interpolation.
    """
    if not model_cfg.preprocess_from_weights or not is_weights_name(model_cfg.weights):
        return None
    ref = weights_ref(model_cfg.name, model_cfg.weights)
    t = _weights_enum_value(ref).transforms()
    return {"weights": ref.name, "mean": [float(m) for m in t.mean], "std": [float(s) for s in t.std],
            "resize_size": list(t.resize_size), "crop_size": list(t.crop_size),
            "interpolation": getattr(t.interpolation, "value", str(t.interpolation))}


def weights_normalization(model_cfg) -> tuple[list[float], list[float]] | None:
    """(mean, std) per channel, on the [0, 1] scale, from the weights' metadata; None = use the data's own."""
    pre = weights_preprocessing(model_cfg)
    return (pre["mean"], pre["std"]) if pre else None


__all__ = ["CachedFile", "WeightsError", "builder_kwargs", "cached_files", "download", "fetch", "initial_weights",
           "weights_normalization", "weights_preprocessing"]
