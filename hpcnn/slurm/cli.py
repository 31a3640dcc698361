"""`hpcnn submit | sweep | status | logs | cancel | results | render | profiles`.

``register(subparsers)`` adds the verbs to the main parser (hpcnn/cli.py); every handler
returns an exit code and lets HpcnnError through, which the main CLI prints as one line.
The login process never waits unless asked (--wait): status, logs and results work from
any later shell.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import HpcnnError
from ..config import split_config_args

RESOURCE_FLAGS = (("--nodes", int, "nodes"), ("--gpus-per-node", int, "gpus_per_node"),
                  ("--tasks-per-node", int, "tasks_per_node"), ("--cpus-per-task", int, "cpus_per_task"),
                  ("--mem-gb", float, "mem_gb"), ("--time", str, "time"), ("--partition", str, "partition"),
                  ("--account", str, "account"), ("--qos", str, "qos"), ("--constraint", str, "constraint"),
                  ("--job-name", str, "job_name"), ("--max-requeues", int, "max_requeues"))


class _Intermixed(argparse.ArgumentParser):
    """Lets `hpcnn submit CONFIG --profile P key=value` mix positionals and options freely."""

    def parse_known_args(self, args=None, namespace=None):
        if getattr(self, "_mixing", False):
            return super().parse_known_args(args, namespace)
        self._mixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._mixing = False


def _intermixed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.__class__ = _Intermixed  # parsers come from the caller's subparsers object
    return parser


def _resources(args) -> dict:
    return {key: getattr(args, key) for _, _, key in RESOURCE_FLAGS if getattr(args, key, None) is not None}


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


def _describe(res) -> str:
    gpus = f"{res.gpus_per_node} GPU{'s' if res.gpus_per_node != 1 else ''}/node" if res.gpus_per_node else "CPU only"
    return (f"{res.nodes} node{'s' if res.nodes != 1 else ''}, {gpus}, {res.tasks_per_node} task(s)/node, "
            f"{res.walltime}")


def cmd_submit(args) -> int:
    from .jobs.submission import plan_job, submit

    path, overrides = split_config_args(args.items)
    if args.dry_run:
        plan = plan_job(path, args.profile, _resources(args), overrides, run_dir=args.run_dir)
        print(plan.script.rstrip("\n"))
        print(f"# dry run: pre-flight passed; would submit to profile {plan.profile.name} ({_describe(plan.resources)})"
              f"\n# run directory would be {plan.run_dir}", file=sys.stderr)
        return 0
    handle = submit(path, args.profile, _resources(args), overrides, run_dir=args.run_dir)
    res = handle.record["resources"]
    if args.json:
        _print_json({"job_id": handle.job_id, "run_dir": str(handle.run_dir), **({"resources": res})})
    else:
        print(f"submitted job {handle.job_id} (profile {handle.record['profile']}, {res['nodes']} node(s), "
              f"{res['gpus_per_node']} GPU(s)/node, {res['walltime']})")
        print(f"run directory: {handle.run_dir}")
        jid = handle.job_id
        print(f"follow it:     hpcnn status {jid}   hpcnn logs {jid}   hpcnn cancel {jid}")
    if args.wait:
        status = handle.wait(timeout_s=args.timeout)
        _print_status(status, args.json)
        return 0 if status.succeeded else 1
    return 0


def cmd_sweep(args) -> int:
    from .jobs.groups import plan_array, submit_array

    kwargs = dict(profile=args.profile, max_parallel=args.max_parallel, resources=_resources(args),
                  overrides=args.overrides)
    if args.dry_run:
        plan = plan_array(args.sweep, **kwargs)
        print(plan.scripts[0].rstrip("\n"))
        print(f"# dry run: pre-flight passed for {len(plan.tasks)} task(s) in {len(plan.chunks)} array(s) "
              f"(profile {plan.profile.name}, {_describe(plan.resources)}, max_parallel {plan.max_parallel})",
              file=sys.stderr)
        for task in plan.tasks:
            print(f"#   task {task.index}: {task.label}", file=sys.stderr)
        return 0
    sweep = submit_array(args.sweep, **kwargs)
    if args.json:
        _print_json({"arrays": sweep.record["arrays"], "sweep_dir": str(sweep.sweep_dir), "tasks": len(sweep)})
    else:
        ids = ", ".join(sweep.array_ids)
        print(f"submitted sweep {sweep.record['name']}: {len(sweep)} task(s) as array job(s) {ids}")
        print(f"sweep directory: {sweep.sweep_dir}")
        print(f"follow it:       hpcnn status {sweep.sweep_dir}   hpcnn results {sweep.sweep_dir}")
    if args.wait:
        statuses = sweep.wait(timeout_s=args.timeout)
        _print_results(sweep.results(statuses), sweep.record.get("metric", "val.accuracy"), args.json)
        return 0 if all(s.succeeded for s in statuses) else 1
    return 0


def _print_status(status, as_json: bool, metric: str | None = None) -> None:
    from .jobs.results import format_number

    if as_json:
        _print_json({**status.to_dict(), "summary": status.summary})
        return
    print(f"job {status.job_id}: {status.state}    {status.run_dir}")
    if status.nodelist:
        print(f"  nodes {status.nodelist}")
    if status.summary:
        parts = [f"training {status.summary.get('status')}"]
        keys = ["val.accuracy", "test.accuracy", "images_per_second"]
        if metric and metric not in keys + ["wall_seconds"]:
            keys.append(metric)
        for key in keys:
            value = status.metric(key)
            if value is not None:
                parts.append(f"{key} {format_number(value)}")
        wall = status.metric("wall_seconds")
        if wall is not None:
            parts.append(f"{wall:.1f} s")
        print("  " + ", ".join(parts))
    if status.reason:
        print(f"  {status.reason}")


def _print_results(rows, metric: str, as_json: bool) -> None:
    from .jobs.results import format_table

    if as_json:
        _print_json(rows)
    else:
        print(format_table(rows, metric))


def cmd_status(args) -> int:
    from collections import Counter

    from .jobs import records
    from .jobs.handles import JobArray, locate
    from .jobs.sweep import check_ranking
    from .site import commands

    if args.metric is not None:
        check_ranking(args.metric, args.mode or "max", "--metric/--mode")
    if args.ref:
        found = [locate(args.ref)]
    else:
        found = []
        for job_id, _ in records.recent(args.limit):
            try:
                found.append(locate(job_id))
            except HpcnnError as err:  # a deleted run directory must not hide the others
                print(f"{job_id}: {err}", file=sys.stderr)
        if not found:
            print(f"no jobs recorded in {records.state_dir() / 'jobs'}")
            return 0
    ids = [i for h in found for i in (h.array_ids if isinstance(h, JobArray) else [h.job_id])]
    states = commands.query_states(ids)  # one query for everything shown
    out = []
    for handle in found:
        if isinstance(handle, JobArray):
            statuses = handle.statuses(states)
            counts = dict(Counter(s.state for s in statuses))
            out.append({"kind": handle.kind, "sweep_dir": str(handle.sweep_dir), "arrays": handle.array_ids,
                        "states": counts, "tasks": [s.to_dict() for s in statuses]})
            if not args.json:
                print(f"{handle.kind} {handle.record['name']} (array job(s) {', '.join(handle.array_ids)}): "
                      + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f"    {handle.sweep_dir}")
                if args.ref:
                    metric = args.metric or handle.record.get("metric", "val.accuracy")
                    _print_results(handle.results(statuses, metric, args.mode), metric, False)
        else:
            status = handle.status(states)
            out.append({**status.to_dict(), "summary": status.summary})
            if not args.json:
                _print_status(status, False, args.metric)
    if args.json:
        _print_json(out[0] if args.ref else out)
    return 0


def cmd_logs(args) -> int:
    from .jobs.handles import JobArray, locate

    found = locate(args.ref)
    if isinstance(found, JobArray):
        found = found[args.task]
    streams = ("out", "err") if args.stream == "both" else (args.stream,)
    shown = False
    for stream in streams:
        path = found.log_path(args.rank, stream)
        text = found.logs(args.rank, args.tail, stream)
        if text:
            if len(streams) > 1:
                print(f"==> {path} <==")
            print(text)
            shown = True
    if not shown:
        print(f"no log yet for job {found.job_id} rank {args.rank} (expected {found.log_path(args.rank, 'out')})",
              file=sys.stderr)
    return 0


def cmd_cancel(args) -> int:
    from .jobs.handles import JobArray, locate

    found = locate(args.ref)
    found.cancel()
    ids = found.array_ids if isinstance(found, JobArray) else [found.job_id]
    print(f"cancelled {', '.join(ids)}")
    return 0


def cmd_results(args) -> int:
    from .jobs.handles import JobArray, locate
    from .jobs.sweep import check_ranking

    found = locate(args.sweep_dir)
    if not isinstance(found, JobArray):
        raise HpcnnError("not a sweep or group directory (no sweep.json)", str(args.sweep_dir),
                         "use `hpcnn status` for a job")
    metric = args.metric or found.record.get("metric", "val.accuracy")
    check_ranking(metric, args.mode or found.record.get("mode", "max"), "--metric/--mode")
    _print_results(found.results(metric=metric, mode=args.mode), metric, args.json)
    return 0


def cmd_render(args) -> int:
    from . import render

    path, overrides = split_config_args(args.items)
    from ..config import load_job

    runs_dir = Path(args.runs_dir or load_job(path, overrides).train.runs_dir).expanduser().absolute()
    text = render(path, args.profile, _resources(args), overrides, runs_dir=runs_dir, run_dir=args.run_dir,
                  python=args.python)
    runs_dir.mkdir(parents=True, exist_ok=True)  # Slurm opens the batch log there before the script runs
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        print(f"wrote {out}; submit it with: sbatch {out}", file=sys.stderr)
    else:
        print(text, end="")
    return 0


def cmd_profiles_list(args) -> int:
    from .site.profiles import list_profiles, load_profile, profiles_dir

    rows = []
    for name in list_profiles():
        p = load_profile(name)
        rows.append({"name": name, "description": p.description, "source": p.source})
    if args.json:
        _print_json(rows)
    else:
        print(f"profiles in {profiles_dir()}:")
        width = max((len(r["name"]) for r in rows), default=4)
        for r in rows:
            print(f"  {r['name'].ljust(width)}  {r['description']}")
    return 0


def cmd_profiles_show(args) -> int:
    import dataclasses

    from ..config.strict import field_docs
    from .site.profiles import Profile, load_profile

    profile = load_profile(args.name)
    if args.json:
        _print_json(dataclasses.asdict(profile))
        return 0
    docs = {name: text for name, _, text in field_docs(Profile)}
    print(f"# profile {profile.name} ({profile.source})")
    for key, value in dataclasses.asdict(profile).items():
        if key != "source":
            print(f"{key}: {json.dumps(value)}    # {docs.get(key, '')}")
    return 0


def register(subparsers) -> None:
    """Add the Slurm verbs to hpcnn's argparse subparsers."""
    def add_resource_flags(p):
        g = p.add_argument_group("resources (override the config's slurm section)")
        for flag, typ, key in RESOURCE_FLAGS:
            g.add_argument(flag, type=typ, dest=key, metavar=key.upper())

    s = _intermixed(subparsers.add_parser("submit", help="pre-flight and submit a training job to Slurm (submitit)",
                              description="Submit one training job; prints its id and run directory and returns."))
    s.add_argument("items", nargs="*", metavar="[CONFIG] [key.sub=value ...]")
    s.add_argument("--profile", help="site profile name or YAML path (default: the config's slurm.profile)")
    add_resource_flags(s)
    s.add_argument("--run-dir", help="continue this run directory from its newest checkpoint (default: a new one)")
    s.add_argument("--dry-run", action="store_true", help="pre-flight and print the script; submit nothing")
    s.add_argument("--wait", action="store_true", help="stay until the job ends (default: return at once)")
    s.add_argument("--timeout", type=float, default=24 * 3600, help="seconds --wait waits at most")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_submit)

    w = _intermixed(subparsers.add_parser("sweep", help="submit a sweep (grid or list of overrides) as one Slurm array",
                              description="Submit every task of SWEEP.yaml as one Slurm array job."))
    w.add_argument("sweep", metavar="SWEEP.yaml")
    w.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides for every task")
    w.add_argument("--profile")
    w.add_argument("--max-parallel", type=int, help="most tasks running at once (%%K)")
    add_resource_flags(w)
    w.add_argument("--dry-run", action="store_true")
    w.add_argument("--wait", action="store_true")
    w.add_argument("--timeout", type=float, default=24 * 3600)
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_sweep)

    st = subparsers.add_parser("status", help="state and results of a job, run dir, sweep or group (one Slurm query)")
    st.add_argument("ref", nargs="?", metavar="JOB_ID|RUN_DIR|SWEEP_DIR|GROUP_DIR", help="default: recent submissions")
    st.add_argument("--limit", type=int, default=20)
    st.add_argument("--metric", help="also show (for a sweep or group directory: rank by) this numeric key of "
                                     "summary.json, e.g. images_per_second, wall_seconds, gpu.energy_j")
    st.add_argument("--mode", choices=["max", "min"], help="with --metric: bigger or smaller is better")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    lg = subparsers.add_parser("logs", help="a job's log (one rank)")
    lg.add_argument("ref", metavar="JOB_ID|RUN_DIR")
    lg.add_argument("--rank", type=int, default=0)
    lg.add_argument("--tail", type=int, default=40, help="last N lines (0 = all)")
    lg.add_argument("--stream", choices=["out", "err", "both"], default="both")
    lg.add_argument("--task", type=int, default=0, help="for a sweep directory: which task")
    lg.set_defaults(func=cmd_logs)

    c = subparsers.add_parser("cancel", help="cancel a job, an array task or a whole sweep")
    c.add_argument("ref", metavar="JOB_ID|RUN_DIR|SWEEP_DIR")
    c.set_defaults(func=cmd_cancel)

    r = subparsers.add_parser("results", help="a sweep's or group's results, best first, failures with reasons")
    r.add_argument("sweep_dir", metavar="SWEEP_DIR|GROUP_DIR|ARRAY_ID")
    r.add_argument("--metric", help="rank by this numeric key of summary.json, e.g. val.accuracy, "
                                    "images_per_second, wall_seconds (default: the sweep's metric)")
    r.add_argument("--mode", choices=["max", "min"], help="max: bigger is better (default: the sweep's mode)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_results)

    rd = _intermixed(subparsers.add_parser("render", help="write an sbatch script for a config (no Slurm needed)",
                               description="Render a ready sbatch script: resolved config inline, srun launch, "
                                           "self-requeue after a preemption checkpoint."))
    rd.add_argument("items", nargs="*", metavar="[CONFIG] [key.sub=value ...]")
    rd.add_argument("--profile")
    add_resource_flags(rd)
    rd.add_argument("-o", "--output", help="write here instead of stdout")
    rd.add_argument("--runs-dir", help="where run directories go (default: the config's train.runs_dir, absolute)")
    rd.add_argument("--run-dir", help="a fixed run directory (default: RUNS_DIR/NAME-$SLURM_JOB_ID)")
    rd.add_argument("--python", help="interpreter on the compute nodes (default: profile's, else this one)")
    rd.set_defaults(func=cmd_render)

    pf = subparsers.add_parser("profiles", help="list or show site profiles")
    psub = pf.add_subparsers(dest="profiles_command", metavar="ACTION", required=True)
    pl = psub.add_parser("list", help="shipped profiles")
    pl.add_argument("--json", action="store_true")
    pl.set_defaults(func=cmd_profiles_list)
    ps = psub.add_parser("show", help="every field of one profile, with its meaning")
    ps.add_argument("name", metavar="NAME|PATH")
    ps.add_argument("--json", action="store_true")
    ps.set_defaults(func=cmd_profiles_show)
