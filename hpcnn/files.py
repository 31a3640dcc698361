"""What hpcnn writes to disk: atomic files and run-directory names (stdlib only).

Atomic means a reader in another shell (``hpcnn status``, a colleague, a resumed job)
sees the old file or the new one, never half of one: write a temporary file next to the
target, flush and fsync it, rename it over the target, fsync the directory.

The temporary file is created with mode 0666 filtered by the umask, like any file a
shell creates, so ``umask 027`` on a cluster lets the project group read results and
checkpoints (``tempfile.mkstemp`` would force 0600).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Callable, IO

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], fsync: bool = True) -> Path:
    """Call ``write(f)`` on a binary file object, then move the result to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()), fsync)


def atomic_write_json(path: str | os.PathLike, data: Any, fsync: bool = True) -> Path:
    """Indented JSON with a final newline; values JSON does not know become strings (paths, dates)."""
    return atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n", fsync)


def _json_default(value: Any):
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    return str(value)


def safe_name(name: str, limit: int = 60) -> str:
    """A job or experiment name as one safe path component."""
    return _UNSAFE.sub("_", str(name))[:limit].strip(".") or "run"


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """RUNS_DIR/NAME-YYYYmmdd-HHMMSS-xxxx, absolute and not yet existing: unique and sortable by time."""
    root = Path(runs_dir).expanduser().absolute()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    while True:
        path = root / f"{safe_name(name)}-{stamp}-{secrets.token_hex(2)}"
        if not path.exists():
            return path


__all__ = ["atomic_write", "atomic_write_json", "atomic_write_text", "new_run_dir", "safe_name"]
