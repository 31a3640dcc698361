"""Advice a user can act on, each tied to the evidence that triggered it. Thresholds live here only
(docs/monitoring.md lists them; a test checks the two agree)."""
from __future__ import annotations

from .fields import SITE_REASONS

THRESHOLDS: dict[str, tuple[float, str]] = {
    "IDLE_UTIL_PERCENT": (15, "mean training utilisation below this: the GPU is almost idle"),
    "INPUT_BOUND_UTIL_PERCENT": (70, "mean training utilisation below this ..."),
    "INPUT_BOUND_DATA_WAIT": (0.20, "... while rank 0 waited at least this share of step time for batches"),
    "UNDERUSED_UTIL_PERCENT": (50, "mean training utilisation below this without data wait: too little work per GPU"),
    "MEMORY_HEADROOM_FRACTION": (0.40, "peak memory below this share of capacity on every GPU: the batch can grow"),
    "MEMORY_TARGET_FRACTION": (0.85, "the growth factor (a lower bound) and `hpcnn memory` aim at this share"),
    "THROTTLE_REPORT_FRACTION": (0.05, "thermal / hw slowdown / power-brake throttling for this share of training"),
    "POWER_CAP_FRACTION": (0.50, "held at the power cap for this share of training"),
    "STRAGGLER_CLOCK_RATIO": (0.90, "a GPU's mean SM clock in training below this times the others' median"),
}


def limit(name: str) -> float:
    return THRESHOLDS[name][0]


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def advise(s: dict, data_wait_fraction: float | None = None, num_workers: int | None = None) -> list[dict]:
    """[{rule, advice, evidence}] for a summary made by ``hpcnn.monitor.summary.summarize``."""
    out: list[dict] = []

    def add(rule: str, advice: str, evidence: str) -> None:
        out.append({"rule": rule, "advice": advice, "evidence": evidence})

    train = s["stages"].get("train") or {}
    util = train.get("util_mean_percent")
    wait = data_wait_fraction
    if util is not None:
        if util < limit("IDLE_UTIL_PERCENT"):
            add("idle", "the GPUs were almost idle: check that the job really computes on them "
                "(train.device: auto/cuda) and that the model is not tiny for the GPU",
                f"mean utilisation in training {util:.0f}%")
        elif util < limit("INPUT_BOUND_UTIL_PERCENT") and wait is not None and wait >= limit("INPUT_BOUND_DATA_WAIT"):
            workers = f" (now {num_workers})" if num_workers is not None else ""
            add("input_bound", f"the input pipeline starves the GPUs: raise data.num_workers{workers}, keep the "
                "data in memory or on local disk, or decode images on the GPU",
                f"mean utilisation in training {util:.0f}% while rank 0 waited {_pct(wait)} of step time for data")
        elif util < limit("UNDERUSED_UTIL_PERCENT"):
            add("underused", "each GPU has too little work per step: a larger train.batch_size, a larger model "
                "or fewer GPUs would use them better",
                f"mean utilisation in training {util:.0f}%"
                + (f", data wait only {_pct(wait)}" if wait is not None else ""))
    gpus = s["per_gpu"]
    fractions = [g["mem_max_mib"] / g["mem_total_mib"] for g in gpus if g.get("mem_max_mib") and g.get("mem_total_mib")]
    if fractions and len(fractions) == len(gpus) and max(fractions) < limit("MEMORY_HEADROOM_FRACTION"):
        factor = limit("MEMORY_TARGET_FRACTION") / max(fractions)
        fullest = max(gpus, key=lambda g: g["mem_max_mib"] / g["mem_total_mib"])
        add("memory_headroom", f"the batch can grow: at least x{factor:.1f} train.batch_size fits in memory "
            "(a lower bound: weights and optimizer state do not grow with the batch, so more fits; `hpcnn memory` "
            "on `hpcnn bench` results at two batch sizes estimates how much); scale the learning rate "
            "with it (schedule.scale_lr: linear)",
            f"peak memory {fullest['mem_max_mib']:.0f} of {fullest['mem_total_mib']:.0f} MiB "
            f"({_pct(max(fractions))}) on the fullest GPU")
    for g in gpus:
        seconds = g.get("train_seconds") or 0
        if seconds <= 0:
            continue
        where = f"GPU {g['gpu']} on {g['host']}"
        throttled = {r: t for r, t in (g.get("throttle_seconds") or {}).items() if r in SITE_REASONS}
        hot = {r: t for r, t in throttled.items() if t / seconds >= limit("THROTTLE_REPORT_FRACTION")}
        if hot:
            words = ", ".join(f"{r} {_pct(t / seconds)}" for r, t in sorted(hot.items(), key=lambda x: -x[1]))
            add("throttling", f"report to the site: {where} slowed itself down (cooling or power delivery)",
                f"throttled during training: {words}")
        cap = (g.get("throttle_seconds") or {}).get("power cap", 0)
        if cap / seconds >= limit("POWER_CAP_FRACTION"):
            limit_w = f" of {g['power_limit_w']:.0f} W" if g.get("power_limit_w") else ""
            add("power_cap", f"{where} ran at its power limit{limit_w} most of the time: if that limit is below the "
                "GPU's default, it is the site's setting — ask the site",
                f"power cap for {_pct(cap / seconds)} of training")
    errors = s["errors"]
    if errors["ecc_uncorrected"] or errors["xid"]:
        where = sorted({f"GPU {e['gpu']} on {e['host']}" for e in errors["xid"]} | set(errors["ecc_uncorrected_on"]))
        add("errors", "report to the site: the GPU hardware reported errors (name the node; exclude it with "
            "sbatch --exclude until it is checked)",
            f"{errors['ecc_uncorrected']} uncorrected ECC error(s), XIDs {sorted({e['xid'] for e in errors['xid']})} "
            f"on {', '.join(where)}")
    slow = s.get("slowest_gpu")
    if slow and slow.get("straggler"):
        add("straggler", f"GPU {slow['gpu']} on node {slow['host']} is slower than the rest and holds back every "
            f"allreduce: report node {slow['host']} to the site, or exclude it (sbatch --exclude={slow['host']})",
            f"mean SM clock in training {slow['sm_clock_mhz']:.0f} MHz vs {slow['median_mhz']:.0f} MHz on the others "
            f"({_pct(slow['ratio'])})")
    return out


__all__ = ["THRESHOLDS", "advise", "limit"]
