"""A sharded prediction on disk: what a Slurm array's tasks read and what ``--collect`` merges.

``FILE.shards/`` (next to the output FILE) holds:

- ``predict.json``: the run, checkpoint, options, the output file, the number of inputs and
  shards, and the working directory relative inputs are read from;
- ``manifest.jsonl``: every input entry, one JSON string per line, listed once on the login node;
- ``shard-NNNNN/rows.csv``: a shard's predictions (written atomically: present = done) and
  ``summary.json`` (throughput, for ``hpcnn status``).

Shard i holds inputs ``[n*i//N, n*(i+1)//N)``: contiguous, so merging in shard order is
input order. Torch-free: the login node writes the manifest and merges the shards.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import IO, Iterable, Iterator

from ..errors import CheckpointError, ConfigError, HpcnnError
from ..files import atomic_write, atomic_write_json
from ..rundir import CHECKPOINT_CHOICES, checkpoint, checkpoints_dir
from . import outputs

SPEC_FILE = "predict.json"
MANIFEST_FILE = "manifest.jsonl"
ROWS_FILE = "rows.csv"
SHARDS_SUFFIX = ".shards"


def checkpoint_path(run_dir: str | Path, which: str = "best") -> Path:
    """The checkpoint a prediction reads; a clear error when the run has none."""
    if (found := checkpoint(run_dir, which)) is not None:
        return found
    raise CheckpointError(f"no {' or '.join(CHECKPOINT_CHOICES[which])} in {checkpoints_dir(run_dir)}", str(run_dir),
                          "pass the directory of a finished run (hpcnn train prints it at the end)")


def shards_dir_for(out: str | Path) -> Path:
    out = Path(out).expanduser().absolute()
    return out.with_name(out.name + SHARDS_SUFFIX)


def bounds(n_inputs: int, n_shards: int, index: int) -> tuple[int, int]:
    return n_inputs * index // n_shards, n_inputs * (index + 1) // n_shards


def shard_dir(directory: Path, index: int) -> Path:
    return Path(directory) / f"shard-{index:05d}"


def rows_file(directory: Path, index: int) -> Path:
    return shard_dir(directory, index) / ROWS_FILE


def write_manifest(directory: Path, entries: Iterable[str], name: str = MANIFEST_FILE) -> int:
    """Stream the entries to ``manifest.jsonl`` (atomically); returns how many there are."""
    count = 0

    def write(f: IO[bytes]) -> None:
        nonlocal count
        for entry in entries:
            f.write(json.dumps(str(entry)).encode() + b"\n")
            count += 1

    atomic_write(Path(directory) / name, write)
    return count


def read_manifest(directory: Path, start: int = 0, stop: int | None = None) -> Iterator[str]:
    with open(Path(directory) / MANIFEST_FILE, encoding="utf-8") as f:
        for line in itertools.islice(f, start, stop):
            yield json.loads(line)


def write_spec(directory: Path, spec: dict) -> None:
    atomic_write_json(Path(directory) / SPEC_FILE, spec)


def read_spec(directory: str | Path) -> dict:
    path = Path(directory) / SPEC_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HpcnnError(f"no {SPEC_FILE} here: not a sharded prediction", str(directory),
                         "pass the FILE.shards directory `hpcnn predict ... --shards N` printed") from None
    except ValueError as err:
        raise HpcnnError(f"{SPEC_FILE} is not valid JSON: {err}", str(path)) from None


def missing_shards(directory: Path, n_shards: int) -> list[int]:
    return [i for i in range(n_shards) if not rows_file(directory, i).is_file()]


def collect(directory: str | Path, out: str | Path | None = None, explain=None) -> dict:
    """Merge every shard in input order into ``out`` (default: the output the prediction was submitted with).

    Missing shards are an error naming them (``explain(indices)`` may add why: failed, still
    running); nothing is written then, and the finished shards stay for the next collect.
    """
    directory = Path(directory)
    spec = read_spec(directory)
    n = int(spec["shards"])
    missing = missing_shards(directory, n)
    if missing:
        listed = ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else "")
        why = explain(missing) if explain else ""
        raise HpcnnError(f"{len(missing)} of {n} shards have no output yet: {listed}" + (f" ({why})" if why else ""),
                         str(directory), "wait for them (`hpcnn status DIR`), or run the same `hpcnn predict` "
                                         "command again (or `hpcnn predict --resubmit DIR`) to rerun only those")
    out = Path(out or spec["out"])
    outputs.merge([rows_file(directory, i) for i in range(n)], out, int(spec["k"]))
    return {"out": str(out), "shards": n, "inputs": int(spec["inputs"])}


def same_prediction(old: dict, new: dict) -> str | None:
    """What differs between a stored spec and a new submission's (None if it is the same prediction)."""
    for key in ("run_dir", "checkpoint", "inputs", "shards", "k", "manifest_sha256"):
        if old.get(key) != new.get(key):
            return f"{key}: was {old.get(key)!r}, now {new.get(key)!r}"
    return None


def check_shards(n_shards: int, n_inputs: int) -> None:
    if n_shards < 1:
        raise ConfigError(f"--shards must be >= 1, got {n_shards}", "--shards")
    if n_inputs < 1:
        raise ConfigError("no inputs to predict (the folders and patterns listed no files)", "predict inputs")
    if n_shards > n_inputs:
        raise ConfigError(f"--shards {n_shards} is more than the {n_inputs} inputs", "--shards",
                          f"use at most {n_inputs}")


def manifest_digest(directory: Path, name: str = MANIFEST_FILE) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(Path(directory) / name, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["MANIFEST_FILE", "SPEC_FILE", "bounds", "check_shards", "checkpoint_path", "collect",
           "manifest_digest", "missing_shards", "read_manifest", "read_spec", "rows_file",
           "same_prediction", "shard_dir", "shards_dir_for", "write_manifest", "write_spec"]
