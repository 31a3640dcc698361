"""Site profiles: what a cluster offers and how it wants to be asked, as validated YAML.

A profile holds *site* facts (partition, account, how GPUs are requested, limits,
module lines, srun flags, the pre-timeout signal); a job config holds *experiment*
facts. Profiles ship in ``slurm_templates/profiles/NAME.yaml``, installed as package data
of ``hpcnn.slurm_templates`` and found through importlib, so a wheel works like a checkout
(``HPCNN_TEMPLATES_DIR`` overrides the directory); any profile can also be given by path.
"""
from __future__ import annotations

import importlib.resources
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from ...config import strict
from ...config.strict import doc
from ...config.walltime import walltime_minutes
from ...errors import ProfileError

LAUNCHERS = ("srun", "torchrun")
GPU_DIRECTIVES = ("gres", "gpus_per_node")
SIGNALS = ("USR1", "USR2", "TERM", "INT", "URG")
TEMPLATES_PACKAGE = "hpcnn.slurm_templates"  # the top-level slurm_templates/ directory, mapped in pyproject/setup.py
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OPTION = re.compile(r"^[a-z][a-z0-9-]*$")
_PLACEHOLDER = re.compile(r"^<[^<>]+>$")  # `account: <your-project>` in a shipped profile: fill in before use
PLACEHOLDER_KEYS = ("partition", "account", "qos", "constraint")


def is_placeholder(value) -> bool:
    """A value written ``<like this>``: a site fact the user must fill in (pre-flight refuses it)."""
    return isinstance(value, str) and bool(_PLACEHOLDER.match(value.strip()))
# local_scratch is written into the script inside double quotes: $VAR expands, nothing else can run
_SCRATCH = re.compile(r"^(?:[A-Za-z0-9_./@+-]|\$[A-Za-z_][A-Za-z0-9_]*|\$\{[A-Za-z_][A-Za-z0-9_]*\})+$")


@dataclass(frozen=True)
class Profile:
    name: str = doc("", "profile name (defaults to the file name)")
    description: str = doc("", "one line shown by `hpcnn profiles list`")
    partition: Optional[str] = doc(None, "default partition; null = the site's default")
    partitions: list = doc([], "partitions a job may name (pre-flight rejects others); empty = any")
    account: Optional[str] = doc(None, "default account to charge")
    qos: Optional[str] = doc(None, "default quality of service")
    constraint: Optional[str] = doc(None, "default node feature constraint (e.g. gpu)")
    gpu_directive: str = doc("gres", "gres (--gres=gpu[:TYPE]:N) | gpus_per_node (--gpus-per-node=[TYPE:]N)")
    gpu_type: Optional[str] = doc(None, "GPU type written into the GPU request (e.g. A100); null = any")
    max_nodes: int = doc(1, "most nodes one job may ask for")
    max_gpus_per_node: int = doc(0, "GPUs a node has (0 = CPU-only site)")
    cpus_per_node: Optional[int] = doc(None, "CPUs a node offers; checks tasks x cpus_per_task")
    cpus_per_gpu: Optional[int] = doc(None, "default cpus_per_task for one-task-per-GPU jobs")
    cpus_per_task: int = doc(1, "default cpus_per_task for CPU-only jobs")
    mem_per_gpu_gb: Optional[float] = doc(None, "default node memory per GPU requested (GB)")
    mem_gb: Optional[float] = doc(None, "default memory per node (GB) when mem_per_gpu_gb does not apply; "
                                        "null = no --mem (site default)")
    max_mem_gb: Optional[float] = doc(None, "most memory one node offers (GB)")
    max_time: str = doc("24:00:00", "longest walltime the partition allows, [D-]HH:MM:SS")
    max_array_size: int = doc(1001, "the site's MaxArraySize: array indices must be below it")
    setup: list = doc([], "shell lines run before launch (module load, source, ...). TRUSTED: written "
                          "verbatim, like lines in your own script")
    env: dict = doc({}, "environment variables exported before launch (values are quoted)")
    srun_args: list = doc([], "extra srun arguments (each one quoted)")
    launcher: str = doc("srun", "srun (one task per GPU) | torchrun (one task per node; rendered scripts)")
    signal: str = doc("USR2", "signal Slurm sends before the time limit (trainer checkpoints on it)")
    signal_lead_s: int = doc(120, "seconds before the time limit the signal is sent (Slurm may send it "
                                  "up to 60 s earlier)")
    requeue: bool = doc(True, "allow the job to requeue itself after a checkpoint (#SBATCH --requeue)")
    python: Union[str, list, None] = doc(None, "interpreter the job runs (path, or a list such as "
                                               "[apptainer, exec, img.sif, python]); null = the one submitting")
    extra_sbatch: dict = doc({}, "more #SBATCH options for every job at this site, {option: value}")
    local_scratch: Optional[str] = doc(None, "node-local storage for data.stage: auto (e.g. /local/$USER or "
                                             "$SLURM_TMPDIR; $VAR is expanded on the node); null = $SLURM_TMPDIR, "
                                             "else $TMPDIR")
    local_scratch_gb: Optional[float] = doc(None, "space one job may use there (GB); pre-flight rejects data.stage "
                                                  "of larger data; null = unknown (checked on the node)")
    links: dict = doc({}, "network links for the scaling model: {inter: {alpha_s, beta_bytes_per_s}, intra: {...}} "
                          "(latency s, bandwidth bytes/s, e.g. from `hpcnn bench allreduce`); empty = unknown")
    source: Optional[str] = doc(None, "file the profile was read from (set by the loader)")

    @property
    def max_time_min(self) -> int:
        return walltime_minutes(self.max_time, "max_time", self.source or self.name, ProfileError)


def templates_dir() -> Path:
    """The sbatch templates and shipped profiles: HPCNN_TEMPLATES_DIR, else the installed package data.

    A source tree used without installing it, or an editable install made before the templates
    were package data, has no ``hpcnn.slurm_templates``: then the checkout's directory is used.
    """
    env = os.environ.get("HPCNN_TEMPLATES_DIR")
    if env:
        return Path(env)
    try:
        return Path(str(importlib.resources.files(TEMPLATES_PACKAGE)))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[3] / "slurm_templates"


def profiles_dir() -> Path:
    return templates_dir() / "profiles"


def list_profiles() -> list[str]:
    folder = profiles_dir()
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def find_profile(name_or_path: str | os.PathLike) -> Path:
    text = str(name_or_path)
    if "/" in text or text.endswith((".yaml", ".yml")):  # a path, else a shipped profile's name
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"profile file not found: {text}", None,
                               f"shipped profiles: {', '.join(list_profiles()) or 'none'}")
        return path
    path = profiles_dir() / f"{text}.yaml"
    if not path.is_file():
        known = list_profiles()
        raise ProfileError(f"unknown profile '{text}'", str(profiles_dir()),
                           strict.suggest(text, known) or f"available: {', '.join(known) or 'none'}; "
                                                          "or pass a path to a profile YAML")
    return path


def _validate(p: Profile, where: str) -> None:
    def fail(key, message):
        raise ProfileError(f"'{key}' {message}", where)

    for key, allowed in (("gpu_directive", GPU_DIRECTIVES), ("launcher", LAUNCHERS), ("signal", SIGNALS)):
        if getattr(p, key) not in allowed:
            fail(key, f"must be one of {', '.join(allowed)}, got {getattr(p, key)!r}")
    for key, low in (("max_nodes", 1), ("max_array_size", 1), ("cpus_per_task", 1), ("max_gpus_per_node", 0),
                     ("signal_lead_s", 0)):
        if getattr(p, key) < low:
            fail(key, f"must be >= {low}, got {getattr(p, key)}")
    for key in ("cpus_per_node", "cpus_per_gpu", "mem_per_gpu_gb", "mem_gb", "max_mem_gb", "local_scratch_gb"):
        value = getattr(p, key)
        if value is not None and value <= 0:
            fail(key, f"must be > 0 or null, got {value}")
    p.max_time_min  # noqa: B018 -- parses, raising ProfileError on a bad walltime
    for i, line in enumerate(p.setup):
        if not isinstance(line, str) or "\n" in line:
            fail(f"setup[{i}]", "must be one shell line (a string without newlines)")
    for i, arg in enumerate(p.srun_args):
        if not isinstance(arg, (str, int, float)) or isinstance(arg, bool):
            fail(f"srun_args[{i}]", f"must be a string, got {arg!r}")
    for key, value in p.env.items():
        if not _ENV_NAME.match(str(key)):
            fail(f"env.{key}", "is not a valid environment variable name")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            fail(f"env.{key}", f"must be a string or number, got {value!r}")
    for key, value in p.extra_sbatch.items():
        if not _OPTION.match(str(key)):
            fail(f"extra_sbatch.{key}", "must be a long sbatch option name such as 'exclusive' or 'mail-type'")
        if isinstance(value, str) and "\n" in value:
            fail(f"extra_sbatch.{key}", "must not contain a newline")
    for key in ("partition", "account", "qos", "constraint", "gpu_type"):
        value = getattr(p, key)
        if value is not None and ("\n" in value or not value.strip()):
            fail(key, "must be a non-empty single-line string or null")
    if p.partitions and p.partition and p.partition not in p.partitions:
        fail("partition", f"'{p.partition}' is not among partitions {p.partitions}")
    if p.launcher == "torchrun" and p.signal not in ("TERM", "INT"):
        fail("signal", f"must be TERM or INT with launcher torchrun (torchrun forwards only those to its workers), "
                       f"got {p.signal!r}")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", p.name):
        fail("name", f"must be a simple name (letters, digits, '-', '_', '.'), got {p.name!r}")
    if p.local_scratch is not None and not _SCRATCH.match(p.local_scratch):
        fail("local_scratch", f"must be a path of letters, digits, '/', '.', '_', '-', '@', '+' and $VAR or ${{VAR}}, "
                              f"got {p.local_scratch!r}")
    _validate_links(p.links, fail)
    if isinstance(p.python, list) and (not p.python or not all(isinstance(x, str) for x in p.python)):
        fail("python", "must be a path or a non-empty list of strings")


def _validate_links(links: dict, fail) -> None:
    """links: {inter: {alpha_s, beta_bytes_per_s}, intra: {...}}: the inter level is required when any is given."""
    if links and "inter" not in links:
        fail("links", "needs an 'inter' level: {inter: {alpha_s: SECONDS, beta_bytes_per_s: BYTES_PER_S}}")
    for level, value in links.items():
        if level not in ("inter", "intra"):
            fail(f"links.{level}", "is not a link level (inter, intra)")
        if not isinstance(value, dict) or set(value) != {"alpha_s", "beta_bytes_per_s"}:
            fail(f"links.{level}", f"must be {{alpha_s: SECONDS, beta_bytes_per_s: BYTES_PER_S}}, got {value!r}")
        for key, number in value.items():
            low = 0 if key == "alpha_s" else 1e-300
            if isinstance(number, bool) or not isinstance(number, (int, float)) or number < low:
                fail(f"links.{level}.{key}", f"must be a number {'>= 0' if low == 0 else '> 0'}, got {number!r}")


def site_default_profile() -> str:
    """The user's default profile (name or path): $HPCNN_PROFILE, else the user config file (``site.choice``)."""
    from .choice import site_default

    return site_default(shipped=list_profiles()).value


def load_profile(name_or_path: str | os.PathLike | Profile | None = None) -> Profile:
    """A shipped profile by name (``local``, ``generic``, ...), a YAML file by path, or None: the user's
    site default ($HPCNN_PROFILE, else the user config file; ``site.choice``)."""
    if isinstance(name_or_path, Profile):
        return name_or_path
    path = find_profile(site_default_profile() if name_or_path is None else name_or_path)
    profile = strict.load_named(Profile, path, ProfileError, "profile")
    _validate(profile, str(path))
    return profile


def profile_from_dict(data: dict, where: str = "<dict>") -> Profile:
    """Build and validate a profile from a mapping (tests, programmatic sites)."""
    profile = strict.build(Profile, {"name": "custom", **data}, where, ProfileError)
    _validate(profile, where)
    return profile


__all__ = ["PLACEHOLDER_KEYS", "Profile", "is_placeholder", "list_profiles", "load_profile", "profile_from_dict",
           "profiles_dir", "site_default_profile", "templates_dir"]
