"""The per-GPU table of `hpcnn top` and `hpcnn gpus`: plain text, one line per GPU."""
from __future__ import annotations

from .. import tables

COLUMNS = ("NODE", "GPU", "UTIL", "MEMORY", "POWER", "TEMP", "SM MHZ", "THROTTLE", "JOB AT")


def _n(value, unit: str = "", digits: int = 0) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:.{digits}f}{unit}"


def position_text(where: dict | None) -> str:
    """'train head e2 step 140' from a progress record or a tagged row; '-' when unknown."""
    if not where or not where.get("stage"):
        return "-"
    parts = [str(where["stage"])]
    if where.get("phase") not in (None, "", "train") and where.get("stage") == "train":
        parts.append(str(where["phase"]))
    if isinstance(where.get("epoch"), int):
        parts.append(f"e{where['epoch'] + 1}")
    if isinstance(where.get("step"), int):
        parts.append(f"step {where['step']}")
    return " ".join(parts)


def gpu_rows(rows: list[dict], where: dict | None = None) -> list[tuple[str, ...]]:
    out = []
    for r in sorted(rows, key=lambda r: (str(r.get("host")), r.get("gpu", -1))):
        mem = "-"
        if isinstance(r.get("mem_used_mib"), (int, float)) and isinstance(r.get("mem_total_mib"), (int, float)):
            mem = f"{r['mem_used_mib'] / 1024:.1f}/{r['mem_total_mib'] / 1024:.0f}G"
        throttle = r.get("throttle")
        throttle_text = "-" if throttle is None else (",".join(w for w in throttle if w != "idle") or "none")
        out.append((str(r.get("host", "?")), str(r.get("gpu", "?")), _n(r.get("util_percent"), "%"), mem,
                    _n(r.get("power_w"), "W"), _n(r.get("temp_c"), "C"), _n(r.get("sm_clock_mhz")), throttle_text,
                    position_text(where or r)))
    return out


def render(rows: list[dict], where: dict | None = None, title: str = "") -> str:
    """The table as text; ``where`` (the job's progress) fills the JOB AT column, else each row's own tag."""
    table = tables.format_table([COLUMNS, *gpu_rows(rows, where)])
    return f"{title}\n{table}" if title else table


__all__ = ["COLUMNS", "position_text", "render"]
