"""Pretrained-weights references, checkable without torch (the login node may lack it).

``model.weights`` is one of:

* a torchvision weights name: ``DEFAULT``, ``IMAGENET1K_V1``, ``IMAGENET1K_V2`` (an entry of the model's
  weights enum), ``resnet18.IMAGENET1K_V1`` (MODEL.ENTRY, the syntax of ``hpcnn weights fetch``) or the
  full enum name ``ResNet18_Weights.IMAGENET1K_V1``. An entry is written in capitals; anything with a
  ``/`` or in lower case is a path (write ``./DEFAULT`` for a file that happens to be called that);
* a ``.pth``/``.pt`` state_dict file, or an hpcnn run directory (``checkpoints/best.pt``, else
  ``checkpoints/model_final.pt``);
* null: random initialisation.

Named weights live in a cache laid out like ``TORCH_HOME`` (``<cache>/hub/checkpoints/<file>``, the file
name taken from the weights' URL), so torchvision finds them there too. Jobs never download: a name whose
file is not cached is a ConfigError naming the ``hpcnn weights fetch`` command, raised by the login-node
pre-flight before anything is queued. The name -> file table is torchvision's weights enums as a
generated data file (``hpcnn.config.torchvision_names``), never torchvision itself, so the same table
answers with and without torch; a test compares it with the installed torchvision.
"""
from __future__ import annotations

import difflib
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .. import rundir
from ..errors import ConfigError
from .torchvision_names import weights_table

TORCHVISION_BASE_URL = "https://download.pytorch.org/models/"
MIRROR_ENV = "HPCNN_WEIGHTS_MIRROR"
HASH_REGEX = re.compile(r"-([a-f0-9]*)\.")  # torch.hub.HASH_REGEX: the SHA-256 prefix in a file name
_NAME = re.compile(r"^(?:([A-Za-z][A-Za-z0-9_]*)\.)?([A-Z][A-Z0-9_]*)$")
_FETCH_NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\.([A-Z][A-Z0-9_]*))?$")


@dataclass(frozen=True)
class WeightsRef:
    """One torchvision weights entry and the file it is stored in."""

    model: str      # resnet18
    enum: str       # ResNet18_Weights
    entry: str      # IMAGENET1K_V1 (DEFAULT already resolved)
    file_name: str  # resnet18-f37072fd.pth
    is_default: bool = False

    @property
    def name(self) -> str:
        """The MODEL.ENTRY name ``hpcnn weights fetch`` takes."""
        return f"{self.model}.{self.entry}"

    @property
    def url(self) -> str:
        return TORCHVISION_BASE_URL + self.file_name

    @property
    def hash_prefix(self) -> str:
        """The SHA-256 prefix the file name carries, found as torch.hub's check_hash finds it ('' if none)."""
        match = HASH_REGEX.search(self.file_name)
        return match.group(1) if match else ""

    def source_url(self, mirror: str | None = None) -> str:
        """Where to download from: the official URL, or the same file name under a mirror (URL or directory)."""
        if not mirror:
            return self.url
        if "://" not in mirror:
            mirror = Path(mirror).expanduser().absolute().as_uri()
        return mirror.rstrip("/") + "/" + self.file_name


# ---------------------------------------------------------------- the name -> file table
def _ref(model: str, entry: str, table: dict) -> WeightsRef:
    enum, default, files = table[model]
    entry = default if entry == "DEFAULT" else entry
    return WeightsRef(model, enum, entry, files[entry], is_default=entry == default)


def refs_for_file(file_name: str, table: dict | None = None) -> list[WeightsRef]:
    """Which weights entries are stored in ``file_name`` (several entries may share one file)."""
    table = weights_table() if table is None else table
    return [_ref(model, entry, table) for model, (_, _, files) in table.items()
            for entry, name in files.items() if name == file_name]


# ---------------------------------------------------------------- parsing names
def is_weights_name(value: str | None) -> bool:
    """``DEFAULT``, ``IMAGENET1K_V2``, ``resnet18.IMAGENET1K_V1``, ``ResNet18_Weights.IMAGENET1K_V1``: not a path."""
    return bool(value) and _NAME.match(str(value).strip()) is not None


def _entries_hint(model: str, table: dict) -> str:
    _, default, files = table[model]
    return f"{model} has DEFAULT (= {default}), " + ", ".join(files)


def _check_entry(model: str, entry: str, table: dict, where: str) -> None:
    files = table[model][2]
    if entry != "DEFAULT" and entry not in files:
        close = difflib.get_close_matches(entry, list(files), n=1, cutoff=0.6)
        hint = (f"did you mean {close[0]}? " if close else "") + _entries_hint(model, table)
        raise ConfigError(f"torchvision has no weights {entry} for {model}", where, hint)


def _model_of_prefix(prefix: str, table: dict) -> str | None:
    if prefix in table:
        return prefix
    return next((model for model, (enum, _, _) in table.items() if enum == prefix), None)


def weights_ref(model: str, value: str, where: str = "model.weights", table: dict | None = None) -> WeightsRef:
    """Resolve ``model.weights`` (a weights name) for ``model.name``; ConfigError with a hint when it cannot be."""
    table = weights_table() if table is None else table
    match = _NAME.match(value.strip())
    if not match:
        raise ConfigError(f"'{value}' is not a torchvision weights name", where,
                          "write DEFAULT, IMAGENET1K_V1, MODEL.ENTRY or a path to a file or run directory")
    prefix, entry = match.groups()
    if model not in table:
        raise ConfigError(f"model.weights: {value} names torchvision weights, but model.name={model} has none",
                          where, "use a .pth/.pt state_dict file or an hpcnn run directory, or null")
    if prefix is not None:
        named = _model_of_prefix(prefix, table)
        if named is None:
            raise ConfigError(f"unknown weights '{value}'", where,
                              f"write {entry} or {model}.{entry} (the weights of model.name={model})")
        if named != model:
            raise ConfigError(f"model.weights: {value} are the weights of {named}, but model.name is {model}",
                              where, f"set model.name={named}, or use {model}'s own: {_entries_hint(model, table)}")
    _check_entry(model, entry, table, where)
    return _ref(model, entry, table)


def parse_weights_name(text: str, where: str = "hpcnn weights fetch", table: dict | None = None) -> WeightsRef:
    """A NAME of ``hpcnn weights fetch``: ``MODEL`` (its DEFAULT), ``MODEL.ENTRY`` or ``Enum_Weights.ENTRY``."""
    table = weights_table() if table is None else table
    match = _FETCH_NAME.match(text.strip())
    model = match and _model_of_prefix(match.group(1), table)
    if not model:
        known = list(table) + [enum for enum, _, _ in table.values()]
        close = difflib.get_close_matches(text.split(".")[0], known, n=1, cutoff=0.6)
        raise ConfigError(f"unknown weights name '{text}'", where,
                          (f"did you mean {close[0]}? " if close else "") +
                          "write MODEL.ENTRY, e.g. resnet18.IMAGENET1K_V1, resnet50.DEFAULT, or just resnet50")
    entry = match.group(2) or "DEFAULT"
    _check_entry(model, entry, table, where)
    return _ref(model, entry, table)


# ---------------------------------------------------------------- the cache and the file a job reads
def cache_root(weights_cache: str | os.PathLike | None = None) -> Path:
    """``model.weights_cache``, else $TORCH_HOME, else torch's own default ($XDG_CACHE_HOME/torch, ~/.cache/torch)."""
    root = (weights_cache or os.environ.get("TORCH_HOME")
            or Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache") / "torch")
    return Path(root).expanduser().absolute()


def checkpoints_dir(cache: str | os.PathLike) -> Path:
    """Where torch.hub (and so torchvision) looks for downloaded weights under TORCH_HOME=cache."""
    return Path(cache) / "hub" / "checkpoints"


def fetch_command(refs, cache: str | os.PathLike) -> str:
    """The exact login-node command that puts ``refs`` into ``cache``."""
    names = " ".join(ref.name for ref in refs)
    return f"hpcnn weights fetch {names} --cache {shlex.quote(str(cache))}"


def run_dir_weights(run_dir: Path, where: str = "model.weights") -> Path:
    """The weights file of an hpcnn run directory: checkpoints/best.pt, else checkpoints/model_final.pt."""
    found = rundir.checkpoint(run_dir, "best")
    if found is not None:
        return found
    names = " or ".join(f"{rundir.CHECKPOINTS_DIR}/{name}" for name in rundir.CHECKPOINT_CHOICES["best"])
    raise ConfigError(f"run directory {run_dir} has no {names}", where,
                      "point model.weights at a run that finished at least one epoch, or at a .pth/.pt file")


def run_dir_model_name(weights_file: Path) -> str | None:
    """model.name of the run a checkpoints/*.pt file belongs to (its resolved config), if known."""
    run_dir = rundir.run_of_checkpoint(weights_file)
    return rundir.model_name(run_dir) if run_dir is not None else None


def weights_source(model_cfg, where: str = "model.weights") -> Path | None:
    """The file a job will load ``model.weights`` from, or None (random init); ConfigError when unusable.

    Never downloads: a weights name must already be in the cache.
    """
    value = model_cfg.weights
    if not value:
        return None
    if is_weights_name(value):
        ref = weights_ref(model_cfg.name, value, where)
        cache = cache_root(model_cfg.weights_cache)
        path = checkpoints_dir(cache) / ref.file_name
        if not path.is_file():
            raise ConfigError(f"pretrained weights {ref.name} are not in the cache: {path} does not exist", where,
                              f"jobs never download; on a login node run: {fetch_command([ref], cache)}")
        return path
    path = Path(os.path.expanduser(str(value)))
    if path.is_dir():
        return run_dir_weights(path, where)
    if not path.is_file():
        hint = "compute nodes usually have no internet: put the weights file in a shared directory"
        if str(value) in weights_table():
            hint = f"torchvision's weights are written in capitals: DEFAULT or {value}.DEFAULT"
        raise ConfigError(f"model.weights file not found: {path}", where, hint)
    return path


__all__ = ["HASH_REGEX", "MIRROR_ENV", "TORCHVISION_BASE_URL", "WeightsRef",
           "cache_root", "checkpoints_dir", "fetch_command", "is_weights_name", "parse_weights_name", "refs_for_file", "run_dir_model_name", "run_dir_weights", "weights_ref",
           "weights_source", "weights_table"]

