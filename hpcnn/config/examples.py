"""The example jobs shipped with hpcnn (the checkout's ``jobs/``, installed as ``hpcnn.example_jobs``).

The README tour says ``hpcnn train jobs/default.yaml``; outside the checkout there is no jobs/.
``hpcnn examples`` lists them and ``--copy DIR`` copies them; a job, sweep or study path that does
not exist but names a shipped example (``jobs/default.yaml``, ``default.yaml``) is read from the
package with a note. Stdlib only (login node).
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

PACKAGE_DIR = "example_jobs"   # hpcnn/example_jobs in an installed wheel (setup.py maps jobs/ there)
_NOTED: set = set()


def examples_dir() -> Path:
    """The shipped examples: the installed package's copy, else the checkout's jobs/ (source tree, editable)."""
    package = Path(__file__).resolve().parents[1]
    installed = package / PACKAGE_DIR
    return installed if installed.is_dir() else package.parent / "jobs"


def list_examples() -> list[str]:
    """Relative paths (``default.yaml``, ``lessons/shortcut.yaml``) of every shipped example."""
    root = examples_dir()
    return sorted(str(p.relative_to(root)) for p in root.rglob("*.yaml")) if root.is_dir() else []


def describe(name: str) -> str:
    """An example's first comment line (what it is), or ''."""
    for line in (examples_dir() / name).read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("# ").strip()
            return text if text.endswith(".") else text + " ..."
        if line.strip():
            break
    return ""


def shipped_example(path: str | Path) -> Path | None:
    """The shipped file a missing relative path names (``jobs/default.yaml`` -> .../default.yaml), else None."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return None
    parts = path.parts[1:] if path.parts[:1] == ("jobs",) else path.parts
    if not parts or ".." in parts:
        return None
    candidate = examples_dir().joinpath(*parts)
    return candidate if candidate.is_file() else None


def resolve(path: str | Path, what: str = "config") -> Path:
    """``path`` itself, or the shipped example it names when it does not exist here (with a note on stderr)."""
    shipped = shipped_example(path)
    if shipped is None:
        return Path(path)
    if shipped not in _NOTED:  # a file read twice in one command gets one note
        _NOTED.add(shipped)
        print(f"note: no {path} here; using the shipped example {shipped} "
              f"(to edit them: hpcnn examples --copy jobs)", file=sys.stderr)
    return shipped


MISSING_HINT = "`hpcnn examples` lists the shipped example jobs; `hpcnn examples --copy DIR` copies them"


def copy_examples(dest: str | Path) -> tuple[list[Path], list[Path]]:
    """Copy every example into ``dest`` (relative layout kept). Existing files are never overwritten.

    Returns (copied, kept): the files written and those left as they were.
    """
    dest, copied, kept = Path(dest), [], []
    for name in list_examples():
        target = dest / name
        if target.exists():
            kept.append(target)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(examples_dir() / name, target)
        copied.append(target)
    return copied, kept


__all__ = ["MISSING_HINT", "copy_examples", "describe", "examples_dir", "list_examples", "resolve",
           "shipped_example"]
