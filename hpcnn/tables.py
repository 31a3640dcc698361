"""The one plain-text table printer: columns two spaces apart, a reason at a row's end.

Every listing hpcnn prints (results, compare, scale, top, runs, tune status, lessons) goes through here,
so they all read alike and a change of layout is made once. Torch-free: login-node commands use it.
"""
from __future__ import annotations

from typing import Sequence


def format_table(rows: Sequence[Sequence[object]], notes: Sequence[str | None] | None = None,
                 align: str = "", indent: str = "", note_mark: str = "    <- ", gap: str = "  ") -> str:
    """``rows`` (the header first) as aligned text.

    ``align`` holds one letter per column, ``l`` (default) or ``r``; a left-aligned last column is never padded.
    ``notes[i]``, when set, follows row i after ``note_mark`` (a failed task's reason, say); ``gap`` separates
    the columns.
    """
    cells = [[str(c) for c in row] for row in rows]
    if not cells:
        return ""
    columns = max(len(row) for row in cells)
    widths = [max((len(row[i]) for row in cells if i < len(row)), default=0) for i in range(columns)]
    lines = []
    for n, row in enumerate(cells):
        padded = [cell.rjust(widths[i]) if align[i:i + 1] == "r" else cell.ljust(widths[i]) if i < len(row) - 1
                  else cell for i, cell in enumerate(row)]
        text = (indent + gap.join(padded)).rstrip()
        note = notes[n] if notes is not None and n < len(notes) else None
        lines.append(text + note_mark + note if note else text)
    return "\n".join(lines)


__all__ = ["format_table"]
