"""Pre-flight: everything checkable on the login node, checked before anything is queued.

A job that waits six hours in the queue and then dies because the data path had a typo
is the most expensive mistake on a cluster. Each check raises one clear error (what,
where, hint); nothing is submitted until all pass. In a submission of several tasks
with their own requests (``preflight_tasks``), the error names the task it is about.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from ...config import JobConfig
from ...config.weights_names import weights_source
from ...errors import ConfigError, DatasetError, HpcnnError, ProfileError, ResourceError, SubmissionError
from .data_checks import check_data_size
from .profiles import PLACEHOLDER_KEYS, Profile, is_placeholder
from .rendering import check_slurm_path
from .resources import Resources, check_fits

SOURCES_WITH_ROOT = {"folder": "dir", "torchvision": "dir", "hdf5": "file", "shards": "dir"}


def check_data(cfg: JobConfig) -> None:
    kind = SOURCES_WITH_ROOT.get(cfg.data.source)
    if not kind:
        return
    root = Path(os.path.expanduser(cfg.data.root or ""))
    hint = "paths are read on the compute nodes: use a shared file system path"
    if not root.exists():
        raise DatasetError(f"data.root does not exist: {root}", "data.root", hint)
    if kind == "dir" and not root.is_dir():
        raise DatasetError(f"data.root must be a directory for data.source={cfg.data.source}: {root}", "data.root")
    if kind == "file" and not root.is_file():
        raise DatasetError(f"data.root must be a file for data.source=hdf5: {root}", "data.root")
    if not os.access(root, os.R_OK | (os.X_OK if kind == "dir" else 0)):
        raise DatasetError(f"data.root is not readable: {root}", "data.root", "check the permissions")


def _data_bytes(cfg: JobConfig) -> int:
    """Bytes data.stage copies: the HDF5 file, or a pack's shards and indexes (read from its index.json)."""
    root = Path(os.path.expanduser(cfg.data.root or ""))
    if cfg.data.source == "hdf5":
        return root.stat().st_size
    try:
        manifest = json.loads((root / "index.json").read_text())
        shards = [s for split in manifest["splits"].values() for s in split["shards"]]
    except (OSError, ValueError, KeyError, AttributeError):
        raise DatasetError(f"data.root is not a shard pack (no readable index.json): {root}", "data.root",
                           "write one with `hpcnn data pack SOURCE --out DIR`") from None
    return sum(s["bytes"] + (root / s["index"]).stat().st_size for s in shards)


def check_stage(cfg: JobConfig, profile: Profile) -> None:
    """data.stage: a source that can be staged, no larger than the node-local space the profile declares."""
    if cfg.data.stage == "none":
        return
    if cfg.data.source not in ("shards", "hdf5"):
        raise ConfigError(f"data.stage works for data.source shards or hdf5, not {cfg.data.source}", "data.stage",
                          "pack the data first (`hpcnn data pack`), or set data.stage: none")
    limit = profile.local_scratch_gb
    size = _data_bytes(cfg)
    if limit and size > limit * 1e9:
        raise ResourceError(f"data.stage: the data ({size / 1e9:.2f} GB) does not fit node-local storage "
                            f"(profile {profile.name} local_scratch_gb: {limit:g})", "data.stage",
                            "read it in place (data.stage: none), or stage to a larger disk (data.stage: PATH)")


def check_weights(cfg: JobConfig) -> None:
    """model.weights can be read on the nodes: a cached torchvision weights name, a file or a run directory.

    A weights name that is not in the cache fails here, naming the ``hpcnn weights fetch`` command:
    jobs never download.
    """
    path = weights_source(cfg.model)
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(f"model.weights is not readable: {path}", "model.weights", "check the permissions")


def check_writable(directory: Path, what: str) -> None:
    """Create the directory if needed and prove we can write a file there."""
    check_slurm_path(directory, what)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".hpcnn-write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what} is not writable: {directory} ({err.strerror})", what,
                          "choose a directory on a shared file system you can write to") from None


def check_setup(profile: Profile) -> None:
    """Every file a `source X` / `. X` setup line reads exists, when it has no shell expansions to resolve."""
    for line in profile.setup:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            raise ProfileError(f"setup line is not valid shell: {line!r}", "profile setup") from None
        if len(words) < 2 or words[0] not in ("source", ".") or any(c in words[1] for c in "$`*?"):
            continue  # module load, exports, or a path only the job's shell can resolve
        if not Path(os.path.expanduser(words[1])).is_file():
            raise ProfileError(f"setup line sources a file that does not exist: {words[1]}",
                               f"profile {profile.name} ({profile.source or 'in memory'})",
                               "fix the path in the profile's setup list")


def check_python(profile: Profile) -> None:
    if profile.python:
        exe = profile.python if isinstance(profile.python, str) else profile.python[0]
        if os.path.isabs(exe) and not os.access(exe, os.X_OK):
            raise ProfileError(f"profile python is not an executable file: {exe}", f"profile {profile.name}")


def check_horovod(cfg: JobConfig, profile: Profile, find_spec=importlib.util.find_spec) -> None:
    """Horovod must be importable here, or be provided on the nodes by the profile's setup lines."""
    provided = any("horovod" in line.lower() for line in profile.setup or ())
    if cfg.dist.backend == "horovod" and not provided and find_spec("horovod") is None:
        raise ConfigError("dist.backend is horovod but Horovod is not installed", "dist.backend",
                          "install it with `bash scripts/build_horovod.sh` (or pip install 'hpcnn[horovod]'), or add "
                          "`module load horovod` (your site's module) to the profile's setup lines")


def check_launch(cfg: JobConfig, res: Resources) -> None:
    if cfg.dist.backend == "horovod" and res.total_tasks > 1:
        raise ResourceError("Horovod jobs are launched by horovodrun, not by submitit's srun tasks", "dist.backend",
                            "write the script with `hpcnn render CONFIG --profile P -o job.sbatch` and sbatch it")
    if cfg.train.device == "cuda" and res.gpus_per_node == 0:
        raise ResourceError("train.device is cuda but slurm.gpus_per_node is 0", "slurm.gpus_per_node",
                            "ask for GPUs or use train.device: auto")
    if cfg.data.decode == "gpu" and (res.gpus_per_node == 0 or cfg.train.device == "cpu"):
        raise ResourceError("data.decode is gpu but the job will not train on a GPU", "data.decode",
                            "ask for GPUs (slurm.gpus_per_node), or use data.decode: auto")


def check_placeholders(res: Resources, profile: Profile) -> None:
    """A shipped profile's ``<your-account>``-style value must be filled in before anything is charged to it."""
    for key in PLACEHOLDER_KEYS:
        value = getattr(res, key)
        if is_placeholder(value):
            where = profile.source or f"profile {profile.name}"
            raise ProfileError(f"{key} is the placeholder {value} of profile {profile.name}", where,
                               f"put your site's {key} into a copy of {where} and submit with --profile COPY.yaml "
                               f"(or set it as your default), or give it per job: --{key} VALUE or slurm.{key}=VALUE")


@contextlib.contextmanager
def naming_task(label: str | None) -> Iterator[None]:
    """Re-raise an HpcnnError with ``task LABEL:`` in front, so a group's error says which task."""
    try:
        yield
    except HpcnnError as err:
        if label is None or isinstance(err, SubmissionError):  # its argv and output do not survive a rebuild
            raise
        raise type(err)(f"task {label}: {err.what}", err.where, err.hint) from None


def check_site(requests: Sequence[tuple[str | None, Resources]], profile: Profile, n_tasks: int,
               max_parallel: int | None, directory: Path, what: str) -> None:
    """What every submission asks of the site: each distinct request fits the profile (once; errors name the
    task by its label), the array's size and throttle, the profile's setup and python, a writable ``directory``."""
    fitted = set()
    for label, res in requests:
        if res.key() not in fitted:
            with naming_task(label):
                check_fits(res, profile)
                check_placeholders(res, profile)
            fitted.add(res.key())
    if n_tasks < 1:
        raise ConfigError("a sweep or group must have at least one task")
    if max_parallel is not None and max_parallel < 1:
        raise ConfigError(f"max_parallel must be >= 1, got {max_parallel}", "max_parallel")
    check_setup(profile)
    check_python(profile)
    check_writable(Path(directory), what)


def preflight_tasks(tasks: Sequence[tuple[str | None, JobConfig, Resources]], profile: Profile, runs_dir: Path,
                    max_parallel: int | None = None) -> None:
    """All checks for tasks that may each have their own request: (label, config, resources) per task."""
    check_site([(label, res) for label, _, res in tasks], profile, len(tasks), max_parallel, runs_dir,
               "train.runs_dir")
    seen_data, seen_weights, counted = set(), set(), {}
    for label, cfg, res in tasks:
        with naming_task(label):
            check_launch(cfg, res)
            check_horovod(cfg, profile)
            key = (cfg.data.source, cfg.data.root, cfg.data.stage)
            if key not in seen_data:
                check_data(cfg)
                check_stage(cfg, profile)
                seen_data.add(key)
            check_data_size(cfg, res, counted)  # counts each data set once, compares each task's global batch
            key = (cfg.model.name, cfg.model.weights, cfg.model.weights_cache)
            if key not in seen_weights:
                check_weights(cfg)
                seen_weights.add(key)


def preflight(configs: Sequence[JobConfig], profile: Profile, res: Resources, runs_dir: Path,
              max_parallel: int | None = None) -> None:
    """All checks for one job (one config) or one sweep (one config per task, one shared request)."""
    preflight_tasks([(None, cfg, res) for cfg in configs], profile, runs_dir, max_parallel)


__all__ = ["check_data", "check_placeholders", "check_setup", "check_site", "check_stage", "check_weights",
           "check_writable", "naming_task", "preflight", "preflight_tasks"]
