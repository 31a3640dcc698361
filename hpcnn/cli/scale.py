"""`hpcnn scale STUDY.yaml | collect | check | status | model`: scaling studies from the login node.

``hpcnn scale STUDY.yaml`` pre-flights and submits the missing or failed points and returns;
run again, it submits only what is still missing, and collects the report once every point is
done. ``collect``/``check``/``status`` take the study directory (or the study file);
``model`` prints the communication model's predictions without any study.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from ..errors import ConfigError
from ..scale import check, collect, model, run_study
from ..scale.report import algorithm_mix, format_table
from ..scale.state import point_states, require_state
from ..scale.study import load_study, read_allreduce, study_dir
from ..slurm.jobs.handles import JobArray
from ..tables import format_table as table_text
from .args import add_json, print_json
from .jobs import planned_site_and_cost, recorded_site_and_cost

ACTIONS = ("run", "collect", "check", "status", "model")


class _ActionOrStudy(argparse.ArgumentParser):
    """`hpcnn scale STUDY.yaml` means `hpcnn scale run STUDY.yaml`."""

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        first = 0  # the first positional: --profile is the one option that takes a value before the study
        while first < len(args) and args[first].startswith("-"):
            first += 2 if args[first] == "--profile" else 1
        if first < len(args) and args[first] not in ACTIONS and not {"-h", "--help"} & set(args[:first]):
            args.insert(0, "run")  # options before the study belong to `run` too
        return super().parse_known_args(args, namespace)


def _study_dir(ref: str) -> Path:
    path = Path(ref)
    return path if path.is_dir() else study_dir(load_study(path))


def cmd_run(args) -> int:
    run = run_study(args.study, profile=args.profile, dry_run=args.dry_run)
    named = {"named": None if Path(args.study).is_dir() else load_study(args.study).profile,
             "named_by": f"the study's profile ({args.study})"}
    if args.dry_run:
        if run.plan is None:
            print(f"# dry run: nothing to submit ({_counts(run.states)})", file=sys.stderr)
            return 0
        for script in run.plan.scripts:
            print(script.rstrip("\n"))
        print(f"# dry run: pre-flight passed; would submit {len(run.submitted)} point(s) "
              f"({', '.join(run.submitted)}) as {len(run.plan.arrays)} array(s)", file=sys.stderr)
        print(planned_site_and_cost(run.plan, args.profile, **named), file=sys.stderr)
        return 0
    if args.json:
        print_json({"study_dir": str(run.study_dir), "submitted": run.submitted, "array_ids": run.array_ids,
                     "unit_dir": str(run.unit_dir) if run.unit_dir else None,
                     "states": {k: s.status for k, s in run.states.items()}, "report": run.report})
        return 0
    if run.submitted:
        print(f"submitted {len(run.submitted)} point(s) ({', '.join(run.submitted)}) as array job(s) "
              f"{', '.join(run.array_ids)}")
        print(recorded_site_and_cost(JobArray.from_dir(run.unit_dir).record, args.profile, **named))
    if run.report is not None:
        print(format_table(run.report))
        print(f"every point is done; report in {run.study_dir}")
    elif not run.submitted:
        print(f"nothing to submit: {_counts(run.states)}")
    for key, s in run.states.items():  # what is neither done nor just submitted
        if key not in run.submitted and s.status != "done":
            job = f" (job {s.attempt['job_id']})" if s.attempt else ""
            print(f"  {key}: {s.status}{job}" + (f": {s.reason}" if s.reason else ""))
    print(f"study directory: {run.study_dir}")
    if run.report is None:
        print(f"follow it:       hpcnn scale status {run.study_dir}   hpcnn scale collect {run.study_dir}")
    return 0


def _counts(states) -> str:
    counts = Counter(s.status for s in states.values())
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))


def cmd_status(args) -> int:
    sdir = _study_dir(args.study)
    state = require_state(sdir)
    states = point_states(state, state.get("order"))
    if args.json:
        print_json({k: {"status": s.status, "job_id": s.attempt["job_id"] if s.attempt else None,
                         "nodelist": s.nodelist, "reason": s.reason} for k, s in states.items()})
        return 0
    print(f"study {state.get('name')}: {_counts(states)}    {sdir}")
    rows = [(key, s.status, f"job {s.attempt['job_id'] if s.attempt else '-'}", s.nodelist or "-", s.reason or "")
            for key, s in states.items()]
    if rows:
        print(table_text(rows, indent="  "))
    return 0


def cmd_collect(args) -> int:
    sdir = _study_dir(args.study)
    report = collect(sdir)
    if args.json:
        print_json(report)
    else:
        print(format_table(report))
        print(f"wrote points.json, points.csv, table.txt and plots in {sdir}")
    return 0


def cmd_check(args) -> int:
    results = check(_study_dir(args.study))
    failed = [r for r in results if not r["ok"]]
    if args.json:
        print_json({"ok": not failed, "checks": results})
    elif not results:
        print("no reference figures in the study: nothing to check")
    else:
        print(table_text([("ok" if r["ok"] else "FAIL", r["point"], r["figure"], r["why"]) for r in results], gap=" "))
        print(f"{len(failed)} of {len(results)} check(s) below the reference" if failed else "all checks passed")
    return 1 if failed else 0


def _floats(text: str, what: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated numbers, got {text!r}", "command line") from None


def model_links(args):
    """Links from --alpha/--beta (and --intra-*) or `hpcnn bench allreduce` files (--links)."""
    levels = dict(read_allreduce(Path(path), "--links") for path in args.links or [])  # level -> Link
    for level, flags, alpha, beta in (("inter", "--alpha and --beta", args.alpha, args.beta),
                                      ("intra", "--intra-alpha and --intra-beta", args.intra_alpha, args.intra_beta)):
        if (alpha is None) != (beta is None):
            raise ConfigError(f"{flags} go together", "command line")
        if alpha is not None:
            levels[level] = model.Link(alpha, beta)
    if "inter" not in levels:
        raise ConfigError("the model needs link parameters", "command line",
                          "give --alpha SECONDS --beta BYTES_PER_S, or --links ALLREDUCE.json from "
                          "`hpcnn bench allreduce` run over two nodes")
    return model.Links(levels["inter"], levels.get("intra"))


def cmd_model(args) -> int:
    links = model_links(args)
    algorithm = model.algorithm_name(args.algorithm, "--algorithm")
    buckets = tuple(_floats(args.buckets, "--buckets")) if args.buckets else args.bucket_bytes
    profile = model.StepProfile(compute_s=args.step_time, grad_bytes=args.grad_bytes,
                                batch_per_rank=1.0 if args.batch is None else args.batch,
                                optimizer_s=args.optimizer_time, data_s=args.data_time, bucket_bytes=buckets,
                                backward_fraction=args.backward_fraction)
    gpus = [int(x) for x in _floats(args.gpus, "--gpus")]
    rows = model.predict(profile, links, gpus, args.gpus_per_node, args.mode, algorithm, not args.no_overlap)
    if args.json:
        print_json({"links": links.to_dict(), "mode": args.mode, "algorithm": algorithm,
                     "overlap": not args.no_overlap, "predictions": [r.to_dict() for r in rows]})
        return 0
    print(f"{algorithm} allreduce, {'with' if not args.no_overlap else 'without'} overlap, {args.mode} scaling, "
          f"{rows[0].buckets if rows else 0} bucket(s), {args.gpus_per_node} rank(s) per node")
    per_image = args.batch is not None  # without --batch images are unknown: say steps/s, not img/s
    rate = "img/s" if per_image else "steps/s"
    table = [("gpus", "nodes", "step ms", "comm ms", "exposed", rate, "speed-up", "eff", "allreduce")]
    table += [(r.ranks, r.nodes, f"{1000 * r.step_s:.2f}", f"{1000 * r.comm_s:.2f}", f"{1000 * r.exposed_comm_s:.2f}",
               f"{r.images_per_second if per_image else 1 / r.step_s:.1f}", f"{r.speedup:.1f}", f"{r.efficiency:.3f}",
               algorithm_mix(r.algorithms)) for r in rows]
    print(table_text(table, align="rrrrrrrrl"))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("scale", help="scaling studies: submit, collect, check; the communication model",
                              description="hpcnn scale STUDY.yaml submits the study's missing or failed points and "
                                          "returns; `collect`, `check`, `status` read a study directory; `model` "
                                          "predicts step time and efficiency from link parameters.")
    p.__class__ = _ActionOrStudy
    sub = p.add_subparsers(dest="scale_command", metavar="STUDY.yaml | ACTION", required=True,
                           parser_class=argparse.ArgumentParser)

    r = sub.add_parser("run", help="(default) pre-flight and submit missing or failed points; collect when all done")
    r.add_argument("study", metavar="STUDY.yaml")
    r.add_argument("--profile", help="site profile (default: the study's, else the config's slurm.profile)")
    r.add_argument("--dry-run", action="store_true", help="pre-flight and print the scripts; submit nothing")
    add_json(r)
    r.set_defaults(func=cmd_run)

    for name, func, text in (("collect", cmd_collect, "write points.json/.csv, table.txt and plots; print the table"),
                             ("check", cmd_check, "points below the study's reference figures (exit 1 if any)"),
                             ("status", cmd_status, "every point's state (one Slurm query)")):
        a = sub.add_parser(name, help=text)
        a.add_argument("study", metavar="STUDY_DIR|STUDY.yaml")
        add_json(a)
        a.set_defaults(func=func)

    m = sub.add_parser("model", help="predict step time, throughput and efficiency at many GPU counts",
                       description="The α-β model of docs/scaling.md: ring, recursive doubling, Rabenseifner or "
                                   "binomial allreduce (or the fastest, auto) per bucket, overlapped with backward "
                                   "except the last bucket.")
    m.add_argument("--step-time", type=float, required=True, help="one rank's forward+backward at --batch (s); "
                   "its data wait and optimizer step go in --data-time and --optimizer-time")
    m.add_argument("--grad-bytes", type=float, required=True, help="gradient size in bytes")
    m.add_argument("--alpha", type=float, help="inter-node latency (s)")
    m.add_argument("--beta", type=float, help="inter-node bandwidth (bytes/s)")
    m.add_argument("--intra-alpha", type=float, help="intra-node latency (s); with --intra-beta: two-level allreduce")
    m.add_argument("--intra-beta", type=float, help="intra-node bandwidth (bytes/s)")
    m.add_argument("--links", nargs="+", metavar="ALLREDUCE.json", help="`hpcnn bench allreduce` results instead")
    m.add_argument("--gpus", required=True, help="comma-separated GPU (rank) counts, e.g. 1,8,64,512,4096")
    m.add_argument("--gpus-per-node", type=int, default=1, help="ranks per node (default 1)")
    m.add_argument("--batch", type=float, help="images per rank at one rank (strong: the global batch); "
                                               "without it throughput is in steps/s")
    m.add_argument("--mode", choices=["weak", "strong"], default="weak")
    m.add_argument("--algorithm", default="ring",
                   help="allreduce between nodes: ring (default) | recursive_doubling | rabenseifner | binomial | "
                        "auto (the fastest per bucket); tree: the old name of binomial")
    m.add_argument("--bucket-bytes", type=float, help="bucket cap in bytes (default 25 MiB, as DDP)")
    m.add_argument("--buckets", help="explicit bucket sizes in bytes, comma-separated")
    m.add_argument("--data-time", type=float, default=0.0,
                   help="data wait per step at --batch (s): per-image work, shrinks with the per-rank batch")
    m.add_argument("--optimizer-time", "--other-time", type=float, default=0.0,
                   help="optimizer step and other per-step constants (s): the same on every rank whatever its "
                        "batch (--other-time: the old name)")
    m.add_argument("--backward-fraction", type=float, default=2 / 3, help="share of --step-time that is backward")
    m.add_argument("--no-overlap", action="store_true", help="communication starts after backward")
    add_json(m)
    m.set_defaults(func=cmd_model)
