"""What hpcnn writes to disk: atomic files and run-directory names (stdlib only).

Atomic means a reader in another shell (``hpcnn status``, a colleague, a resumed job)
sees the old file or the new one, never half of one: write a temporary file next to the
target, flush and fsync it, rename it over the target, fsync the directory.

The temporary file is created with mode 0666 filtered by the umask, like any file a
shell creates, so ``umask 027`` on a cluster lets the project group read results and
checkpoints (``tempfile.mkstemp`` would force 0600).

A full file system, an exceeded quota or a file-size limit (ENOSPC, EDQUOT, EFBIG — also when
torch.save wraps them in a RuntimeError) becomes one ``StorageError`` line: what ran out, the file,
the bytes it needs and the bytes free. The partial temporary file is removed first, so the file
that was there before is intact. ``check_writable`` fails early, before any work, on an output
place that cannot be created or written.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import secrets
import time
from pathlib import Path
from typing import Any, Callable, IO, Iterator

from .errors import HpcnnError, StorageError

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
# errno -> what ran out, in words
OUT_OF_SPACE = {errno.ENOSPC: "the file system is full", errno.EDQUOT: "the disk quota is exceeded",
                errno.EFBIG: "the file size limit of this process (ulimit -f) is reached"}


def storage_cause(err: BaseException | None) -> OSError | None:
    """The out-of-space OSError behind ``err`` (itself, its __cause__ or __context__), else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in OUT_OF_SPACE:
            return err
        err = err.__cause__ or err.__context__
    return None


def free_bytes(path: str | os.PathLike) -> int | None:
    """Bytes an unprivileged user may still write on the file system holding ``path`` (its nearest existing parent)."""
    probe = Path(path).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        st = os.statvfs(probe)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _bytes(n: int) -> str:
    return f"{n:,} bytes"


def out_of_space_error(cause: OSError, path: str | os.PathLike, needed: int | None = None,
                       written: int | None = None, what: str = "", kept: str | None = None) -> StorageError:
    """The one line for a write that ran out of space: what ran out, how much is needed and free, what is intact."""
    path = Path(path)
    need = (f"needs {_bytes(needed)}" if needed else
            f"needs more than the {_bytes(written)} written" if written else "could not be written")
    free = free_bytes(path)
    text = f"{OUT_OF_SPACE[cause.errno]}: {what or path.name} {need}"
    if free is not None:
        text += f", {_bytes(free)} free there"
    kept = kept or ("the previous version of the file is intact" if path.exists() else "nothing was written")
    return _with_cause(StorageError(text, str(path), f"{kept}; free space (or ask for quota) and run it again"),
                       cause, path)


def _with_cause(err: StorageError, cause: OSError, path) -> StorageError:
    """The OSError side of a StorageError: the cause's errno, and the file."""
    err.errno, err.strerror, err.filename = cause.errno, cause.strerror, str(path) if path else None
    return err


def storage_error_from(err: BaseException) -> StorageError | None:
    """The one line for any exception that ran out of space (the CLI's last resort); None for other errors."""
    cause = storage_cause(err)
    if cause is None:
        return None
    name = cause.filename if isinstance(cause.filename, str) else None
    free = free_bytes(name) if name else None
    text = OUT_OF_SPACE[cause.errno] + (f": cannot write {Path(name).name}" if name else "")
    if free is not None:
        text += f", {_bytes(free)} free there"
    return _with_cause(StorageError(text, name, "the files written before are intact; free space (or ask for "
                                                "quota) and run it again"), cause, name)


def _storage_error(err: OSError, path: Path, action: str) -> StorageError:
    """A file (or its folder) that could not even be created: out of space, or a place not writable."""
    cause = storage_cause(err)
    if cause is not None:
        return out_of_space_error(cause, path)
    where = err.filename if isinstance(err.filename, str) else str(path)
    return _with_cause(StorageError(f"cannot {action}: {err.strerror or err}", where,
                                    "choose a place you can write to"), err, where)


def check_writable(path: str | os.PathLike, what: str = "output") -> Path:
    """Fail now, in one line, unless a file can be created at ``path``: its directory is made and probed.

    For commands that read or compute a long time before writing (``hpcnn predict``): a place that
    cannot be written is found before any input is read, not after.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise StorageError(f"{what} {path} is a directory", str(path), "name a file, e.g. DIR/predictions.csv")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temp(path)
        os.close(fd)
        tmp.unlink()
    except OSError as err:
        where = err.filename if isinstance(err.filename, str) else str(path.parent)
        raise _with_cause(StorageError(f"cannot write {what} {path}: {err.strerror or err}", where,
                                       "choose a directory you can write to (it is created if missing)"),
                          err, where) from None
    return path


def _create_temp(path: Path) -> tuple[Path, int]:
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        with contextlib.suppress(FileExistsError):  # a name taken meanwhile: draw another
            return tmp, os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any], fsync: bool = True,
                 size: int | Callable[[], int] | None = None) -> Path:
    """Call ``write(f)`` on a binary file object, then move the result to ``path`` atomically.

    ``size``: the bytes the file needs (or a function computing them, called only when space ran
    out), for the error message; without it the message says how much was written before the end.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_temp(path)
    except OSError as err:
        raise _storage_error(err, path, f"create {path.name}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        written = tmp.stat().st_size if tmp.exists() else None
        tmp.unlink(missing_ok=True)
        cause = storage_cause(err)
        if cause is None:
            raise
        raise out_of_space_error(cause, path, _needed(size), written) from err
    if fsync:
        with contextlib.suppress(OSError):  # some file systems refuse fsync on directories
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    return path


def _needed(size: int | Callable[[], int] | None) -> int | None:
    try:
        return size() if callable(size) else size
    except Exception:  # only for the message: never hide the real error behind this one
        return None


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` (whole lines) to a log such as metrics.jsonl; out of space, the file is cut back to
    its last complete line and a ``StorageError`` is raised: no half line for a reader to trip over."""
    path = Path(path)
    data = text.encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    except OSError as err:
        raise _storage_error(err, path, f"open {path.name}") from None
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        except OSError as err:
            cause = storage_cause(err)
            if cause is None:
                raise
            os.ftruncate(fd, start)
            raise out_of_space_error(cause, path, len(data), what=f"appending to {path.name}",
                                     kept=f"{path.name} keeps every line written before") from None
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike, text: str, fsync: bool = True) -> Path:
    data = text.encode()
    return atomic_write(path, lambda f: f.write(data), fsync, size=len(data))


def atomic_write_json(path: str | os.PathLike, data: Any, fsync: bool = True) -> Path:
    """Indented JSON with a final newline; values JSON does not know become strings (paths, dates)."""
    # numpy / torch scalars (``.item()``) become numbers
    text = json.dumps(data, indent=2, default=lambda v: v.item() if hasattr(v, "item") else str(v))
    return atomic_write_text(path, text + "\n", fsync)


def read_json_dict(path: str | os.PathLike) -> dict | None:
    """The JSON object in ``path``; None when it is missing, unreadable, not JSON or not an object."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def create_once(path: str | os.PathLike) -> bool:
    """True for the one process that creates ``path``; False if it exists (O_EXCL: atomic on NFSv3+ and Lustre
    too). How workers on several nodes agree who does something once (retry a trial, promote one)."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        return True
    except FileExistsError:
        return False


__all__ = ["OUT_OF_SPACE", "append_text", "atomic_write", "atomic_write_json", "atomic_write_text",
           "check_writable", "create_once", "free_bytes", "new_run_dir", "out_of_space_error", "read_json_dict",
           "safe_name", "storage_cause", "storage_error_from"]


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, busy: str, hint: str = "wait for it to return") -> Iterator[None]:
    """One login-node command at a time on a directory (a study, a sweep): `busy` says who else is at it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise HpcnnError(busy, str(directory), hint) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
