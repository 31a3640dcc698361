"""Generate docs/config.md from the schema, so the reference cannot drift from the code.

    python -m hpcnn.config.reference > docs/config.md
"""
from __future__ import annotations

import dataclasses

from . import strict
from .load import default_config
from .schema import JobConfig

HEADER = """# Job config reference

Generated from `hpcnn/config/schema.py` by `python -m hpcnn.config.reference > docs/config.md`
(a test fails when this file is out of date). Every key is optional; unknown keys are errors.
Override any key on the command line as `section.key=value` (YAML syntax for the value); a list item by its
index, `phases[0].epochs=1` (one past the end adds an item). Numbers are read as YAML 1.2 reads them, in files
and overrides alike: `1e-3`, `5e+2` and `.5` are numbers. Every mistake of a file is reported at once, one per line.

"""


def _fmt(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value!r}".replace("'", "")


def _section(cls, obj, prefix: str, lines: list[str]) -> None:
    nested, rows = [], []
    for f in dataclasses.fields(cls):
        typ = strict.field_types(cls)[f.name]
        sub = strict.section_type(typ) or strict.list_section_type(typ)
        if sub is not None:
            nested.append((f, sub))
            continue
        text = f.metadata.get("doc", "").replace("|", "\\|")
        rows.append(f"| `{prefix}{f.name}` | `{_fmt(getattr(obj, f.name))}` | {text} |")
    if rows:
        lines += ["| key | default | meaning |", "|---|---|---|", *rows, ""]
    for f, sub in nested:
        lines += [f"## `{prefix}{f.name}` — {f.metadata.get('doc', '')}", ""]
        if isinstance(getattr(obj, f.name), list):  # a list of sections: document one item's keys
            _section(sub, strict.defaults(sub), f"{prefix}{f.name}[i].", lines)
        else:
            _section(sub, getattr(obj, f.name), f"{prefix}{f.name}.", lines)


def render() -> str:
    lines = [HEADER.rstrip(), ""]
    _section(JobConfig, default_config(), "", lines)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
