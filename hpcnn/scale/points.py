"""Point records and the scaling arithmetic: pure functions of what each point measured.

- ``placement_flags``: a point that ran on another placement than it asked for (2 tasks asked
  on one node but spread over two, 2 nodes asked but 1 used, fewer ranks) is flagged; flagged
  points are reported, never used as the baseline, and drawn apart in the plots.
- ``add_scaling``: speed-up and parallel efficiency, ``efficiency = throughput(N) / (N ·
  throughput(1))``. The baseline is the unflagged 1-rank point; without one, the smallest
  unflagged point, assuming it scaled perfectly (said in the report).
"""
from __future__ import annotations

from collections import Counter

from ..env.hostlist import expand as expand_hostlist
from ..errors import WorldError


def _hosts(nodelist: str) -> list[str]:
    try:
        return expand_hostlist(nodelist) if nodelist else []
    except WorldError:
        return [nodelist]


def placement_flags(nodes: int, per_node: int, world_size: int | None, hosts_per_rank: list | None,
                    nodes_ran: list | None) -> list[str]:
    """What differs between the placement asked for and the one the point ran on (empty: as asked).

    ``hosts_per_rank`` (host of rank i, from the benchmark) is the most exact source; without it
    ``nodes_ran`` (Slurm's node list) still shows a wrong node count.
    """
    flags = []
    ranks = nodes * per_node
    if world_size is not None and world_size != ranks:
        flags.append(f"ran {world_size} ranks, asked for {ranks}")
    if hosts_per_rank:
        counts = Counter(str(h) for h in hosts_per_rank)
        if len(counts) != nodes:
            flags.append(f"ran on {len(counts)} node(s) ({', '.join(sorted(counts))}), asked for {nodes}")
        uneven = {h: c for h, c in sorted(counts.items()) if c != per_node}
        if uneven:
            flags.append("ranks per node " + ", ".join(f"{h}:{c}" for h, c in uneven.items())
                         + f", asked for {per_node}")
    elif nodes_ran and len(set(nodes_ran)) != nodes:
        flags.append(f"ran on {len(set(nodes_ran))} node(s) ({', '.join(sorted(set(nodes_ran)))}), asked for {nodes}")
    return flags


def point_record(entry: dict, status: str, bench: dict | None, nodelist: str = "", reason: str = "",
                 job_ids: list | None = None) -> dict:
    """One row of points.json: what was asked (``entry`` from study.json), what ran, what it measured."""
    record = {key: entry[key] for key in ("key", "label", "nodes", "per_node", "gpus", "ranks", "batch_per_rank",
                                          "global_batch")}
    bench = bench or {}
    ips = bench.get("images_per_second") or {}
    hosts_per_rank = bench.get("hosts_per_rank")
    nodes_ran = sorted(set(hosts_per_rank)) if hosts_per_rank else (bench.get("nodes") or _hosts(nodelist))
    record.update({
        "status": status, "reason": reason, "job_id": (job_ids or [""])[-1], "job_ids": list(job_ids or []),
        "slurm_nodelist": nodelist, "nodes_ran": list(nodes_ran), "hosts_per_rank": hosts_per_rank,
        "world_size": bench.get("world_size"),
        "images_per_second": ips.get("median"), "images_per_second_min": ips.get("min"),
        "images_per_second_max": ips.get("max"), "step_time_s": bench.get("step_time_s"),
        "device": bench.get("device"), "precision": bench.get("precision"), "gpu": bench.get("gpu"),
        "gradient_bytes": bench.get("gradient_bytes"), "bucket_bytes": bench.get("bucket_bytes"),
        "flags": placement_flags(entry["nodes"], entry["per_node"], bench.get("world_size"), hosts_per_rank,
                                 nodes_ran) if bench else [],
    })
    return record


def usable(record: dict) -> bool:
    """Measured, and where it was asked to run."""
    return record.get("images_per_second") is not None and not record.get("flags")


def baseline(records: list[dict]) -> dict | None:
    """The unflagged measured point with the fewest ranks (the 1-rank point when there is one)."""
    candidates = [r for r in records if usable(r)]
    return min(candidates, key=lambda r: r["ranks"]) if candidates else None


def add_scaling(records: list[dict]) -> dict | None:
    """Fill ``speedup`` and ``efficiency`` of every measured point; returns the baseline record.

    throughput(1) is the baseline's throughput divided by its rank count (exact for a 1-rank
    baseline). speed-up = throughput(N) / throughput(1); efficiency = speed-up / N.
    """
    base = baseline(records)
    for record in records:
        value = record.get("images_per_second")
        if base is None or value is None:
            record["speedup"] = record["efficiency"] = None
            continue
        one = base["images_per_second"] / base["ranks"]
        record["speedup"] = value / one
        record["efficiency"] = value / (record["ranks"] * one)
    return base


__all__ = ["add_scaling", "baseline", "placement_flags", "point_record", "usable"]
