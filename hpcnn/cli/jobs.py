"""`hpcnn submit | sweep | status | logs | cancel | results | render | profiles`: Slurm from the login node.

Every handler returns an exit code and lets HpcnnError through, which hpcnn's main prints as one
line. The login process never waits unless asked (--wait): status, logs and results work from any
later shell. Torch-free.
"""
from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

from ..config import load_job, split_config_args
from ..config.strict import field_docs
from ..errors import HpcnnError, SubmissionError
from ..slurm import render
from ..slurm.jobs import records
from ..slurm.jobs.follow import follow
from ..slurm.jobs.groups import plan_array, submit_array
from ..slurm.jobs.handles import JobArray, locate
from ..slurm.jobs.results import RUN_FILES, format_number, format_table, rank_run_dirs
from ..slurm.jobs.resubmit import resubmit_sweep
from ..slurm.jobs.status import live_states
from ..slurm.jobs.submission import plan_job, submit
from ..slurm.jobs.sweep import check_ranking
from ..slurm.site import commands
from ..slurm.site.choice import explain
from ..slurm.site.cost import cost_of, total
from ..slurm.site.profiles import Profile, list_profiles, load_profile, profiles_dir
from ..slurm.site.resources import Resources
from ..tables import format_table as table_text
from ..tune.spec import RECORD as SEARCH_RECORD
from ..tune.status import format_report as format_search, report as search_report
from .args import add_items, add_json, add_resource_flags, intermixed, print_json, resources

CONFIG_PROFILE = "the job config's slurm.profile"  # what names the profile, unless a study file does


def _describe(res) -> str:
    gpus = f"{res.gpus_per_node} GPU{'s' if res.gpus_per_node != 1 else ''}/node" if res.gpus_per_node else "CPU only"
    return (f"{res.nodes} node{'s' if res.nodes != 1 else ''}, {gpus}, {res.tasks_per_node} task(s)/node, "
            f"{res.walltime}")


def _site_and_cost(profile, flag, named, cost, named_by: str = CONFIG_PROFILE, prefix: str = "") -> str:
    """Two lines every submission prints: which site profile and why, and what the request can cost.

    ``named``: the profile the job config (or a study file: ``named_by`` says which) names, when it names one;
    ``prefix`` starts each line (``# `` for a dry run's comments).
    """
    return (f"{prefix}{explain(profile, flag, named, named_by)}\n"
            f"{prefix}cost: {cost.describe()} (walltime x resources x tasks)")


def _recorded_cost(record: dict, only=None):
    """The cost of a submitted unit from its record (job.json or sweep.json); ``only``: these task indices."""
    tasks = record.get("tasks")
    if tasks and only is not None:
        wanted = set(only)
        tasks = [t for t in tasks if t.get("index") in wanted]
    if tasks and all(t.get("resources") for t in tasks):
        return total(Resources.from_dict(t["resources"]) for t in tasks)
    return cost_of(Resources.from_dict(record["resources"]), len(tasks) if tasks else 1)


def recorded_site_and_cost(record: dict, flag=None, only=None, named=None, named_by: str = CONFIG_PROFILE) -> str:
    """The profile and cost lines for a unit already submitted (jobs, scale studies, predict arrays)."""
    profile = SimpleNamespace(name=record.get("profile"), source=record.get("profile_source"))
    return _site_and_cost(profile, flag, named, _recorded_cost(record, only), named_by)


def planned_site_and_cost(plan, flag=None, named=None, named_by: str = CONFIG_PROFILE) -> str:
    """The profile and cost lines for a planned array (dry runs), each line a ``# `` comment."""
    named = named or (plan.base.slurm.profile if plan.base else None)
    return _site_and_cost(plan.profile, flag, named, total(t.resources for t in plan.tasks), named_by, "# ")


def cmd_submit(args) -> int:
    path, overrides = split_config_args(args.items)
    if args.dry_run:
        plan = plan_job(path, args.profile, resources(args), overrides, run_dir=args.run_dir)
        print(plan.script.rstrip("\n"))
        print(f"# dry run: pre-flight passed; would submit to profile {plan.profile.name} ({_describe(plan.resources)})"
              f"\n# run directory would be {plan.run_dir}", file=sys.stderr)
        print(_site_and_cost(plan.profile, args.profile, plan.config.slurm.profile, cost_of(plan.resources),
                             prefix="# "), file=sys.stderr)
        return 0
    handle = submit(path, args.profile, resources(args), overrides, run_dir=args.run_dir)
    res, jid = handle.record["resources"], handle.job_id
    if args.json:
        print_json({"job_id": jid, "run_dir": str(handle.run_dir), "resources": res,
                    "profile": handle.record["profile"], "profile_source": handle.record.get("profile_source"),
                    "cost": dataclasses.asdict(_recorded_cost(handle.record))})
    else:
        print(f"submitted job {jid} (profile {handle.record['profile']}, {res['nodes']} node(s), "
              f"{res['gpus_per_node']} GPU(s)/node, {res['walltime']})")
        print(recorded_site_and_cost(handle.record, args.profile, named=load_job(path, overrides).slurm.profile))
        print(f"run directory: {handle.run_dir}")
        print(f"follow it:     hpcnn status {jid}   hpcnn logs {jid}   hpcnn cancel {jid}")
    if args.wait:
        status = handle.wait(timeout_s=args.timeout)
        _print_status(status, args.json)
        return 0 if status.succeeded else 1
    return 0


def _wait_for_sweep(sweep, args) -> int:
    """--wait: the sweep's results once its tasks ended; 1 if any did not succeed."""
    statuses = sweep.wait(timeout_s=args.timeout)
    _print_results(sweep.results(statuses), sweep.record.get("metric", "val.accuracy"), args.json)
    return 0 if all(s.succeeded for s in statuses) else 1


def cmd_resubmit(args, sweep_dir: str) -> int:
    changed = [flag for flag, on in (("overrides", args.overrides), ("--max-parallel", args.max_parallel),
                                     ("--profile", args.profile), ("resource flags", resources(args))) if on]
    if changed:
        raise HpcnnError(f"{', '.join(changed)} cannot change a submitted sweep", sweep_dir,
                         "a resubmission reruns the failed tasks as they were; submit the sweep file for a new sweep")
    done = resubmit_sweep(sweep_dir, dry_run=args.dry_run)
    if args.dry_run and done.plan is not None:
        print("\n".join(done.plan.scripts).rstrip("\n"))
    left = ", ".join(f"{n} {state}" for state, n in sorted(done.skipped.items())) or "none"
    if args.json:
        print_json({"sweep_dir": str(done.sweep.sweep_dir), "resubmitted": done.tasks, "arrays": done.array_ids,
                     "left_alone": done.skipped, "dry_run": args.dry_run})
    elif not done.tasks:
        print(f"nothing to resubmit: every task is finished or still queued ({left})    {done.sweep.sweep_dir}")
    else:
        verb = "would resubmit" if args.dry_run else "resubmitted"
        ids = f" as array job(s) {', '.join(done.array_ids)}" if done.array_ids else ""
        print(f"{verb} {len(done.tasks)} task(s) of sweep {done.sweep.record['name']}{ids}: "
              f"{', '.join(map(str, done.tasks[:20]))}{' ...' if len(done.tasks) > 20 else ''} (left alone: {left})")
        print(f"follow it: hpcnn status {done.sweep.sweep_dir}   hpcnn results {done.sweep.sweep_dir}")
    return _wait_for_sweep(done.sweep, args) if args.wait and done.array_ids else 0


def cmd_sweep(args) -> int:
    # `hpcnn sweep SWEEP_DIR` or `hpcnn sweep SWEEP.yaml --resubmit SWEEP_DIR`: rerun a sweep's failed tasks
    target = args.resubmit or (args.sweep if Path(args.sweep).is_dir() else None)
    if target is not None:
        return cmd_resubmit(args, target)
    kwargs = dict(profile=args.profile, max_parallel=args.max_parallel, resources=resources(args),
                  overrides=args.overrides)
    if args.dry_run:
        plan = plan_array(args.sweep, **kwargs)
        print(plan.scripts[0].rstrip("\n"))
        print(f"# dry run: pre-flight passed for {len(plan.tasks)} task(s) in {len(plan.chunks)} array(s) "
              f"(profile {plan.profile.name}, {_describe(plan.resources)}, max_parallel {plan.max_parallel})",
              file=sys.stderr)
        for task in plan.tasks:
            print(f"#   task {task.index}: {task.label}", file=sys.stderr)
        print(planned_site_and_cost(plan, args.profile), file=sys.stderr)
        return 0
    sweep = submit_array(args.sweep, **kwargs)
    if args.json:
        print_json({"arrays": sweep.record["arrays"], "sweep_dir": str(sweep.sweep_dir), "tasks": len(sweep)})
    else:
        ids = ", ".join(sweep.array_ids)
        print(f"submitted sweep {sweep.record['name']}: {len(sweep)} task(s) as array job(s) {ids}")
        print(recorded_site_and_cost(sweep.record, args.profile))
        print(f"sweep directory: {sweep.sweep_dir}")
        print(f"follow it:       hpcnn status {sweep.sweep_dir}   hpcnn results {sweep.sweep_dir}")
    return _wait_for_sweep(sweep, args) if args.wait else 0


def _print_status(status, as_json: bool, metric: str | None = None) -> None:
    if as_json:
        print_json({**status.to_dict(), "summary": status.summary})
        return
    source = f" (from {status.source})" if status.source else ""
    print(f"job {status.job_id}: {status.state}{source}    {status.run_dir}")
    if status.nodelist:
        print(f"  nodes {status.nodelist}")
    if status.summary:
        parts = [f"training {status.summary.get('status')}"]
        keys = ["val.accuracy", "test.accuracy", "images_per_second"]
        if metric and metric not in keys + ["wall_seconds"]:
            keys.append(metric)
        values = {key: status.metric(key) for key in keys}
        parts += [f"{key} {format_number(value)}" for key, value in values.items() if value is not None]
        wall = status.metric("wall_seconds")
        if wall is not None:
            parts.append(f"{wall:.1f} s")
        print("  " + ", ".join(parts))
    if status.reason:
        print(f"  {status.reason}")


def _print_results(rows, metric: str, as_json: bool) -> None:
    print_json(rows) if as_json else print(format_table(rows, metric))


def cmd_status(args) -> int:
    if args.metric is not None:
        check_ranking(args.metric, args.mode or "max", "--metric/--mode")
    if args.ref and (search := _search_dir(args.ref)) is not None:
        rep = {"kind": "search", **search_report(search)}  # the study's view: trials by state, best so far
        print_json(rep) if args.json else print(format_search(rep))
        return 0
    found = [locate(args.ref)] if args.ref else _recent_units(args.limit)
    if not found:
        print(f"no jobs recorded in {records.state_dir() / 'jobs'}")
        return 0
    jobs = [h for h in found if not isinstance(h, Path)]
    ids = [i for h in jobs for i in (h.array_ids if isinstance(h, JobArray) else [h.job_id])]
    tasks = [t.job_id for h in jobs for t in (h.tasks if isinstance(h, JobArray) else [h])]
    states = live_states(ids, tasks)  # one sacct (+ one squeue for what may still be queued) for everything shown
    out = []
    for handle in found:
        if isinstance(handle, Path):  # a tune search: its study says more than the array's states
            out.append({"kind": "search", **search_report(handle)})
            if not args.json:
                print("\n".join(format_search(out[-1]).splitlines()[:4]))
        elif isinstance(handle, JobArray):
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
        print_json(out[0] if args.ref else out)
    return 0


def _recent_units(limit: int) -> list:
    """The last ``limit`` submissions, each once: a study's or resubmitted sweep's several arrays are one unit."""
    found, seen = [], set()
    for job_id, directory in records.recent(limit):
        if str(directory) in seen:
            continue
        if _search_dir(directory) is not None:
            seen.add(str(directory))
            found.append(Path(directory))
            continue
        try:
            handle = locate(job_id)
        except HpcnnError as err:  # a deleted run directory must not hide the others
            print(f"{job_id}: {err}", file=sys.stderr)
            continue
        if isinstance(handle, JobArray):
            seen.update({str(handle.sweep_dir), str(directory)})
        elif (str(handle.run_dir), handle.job_id) in seen:
            continue  # an earlier job of a run continued with --run-dir: the run shows its latest
        else:
            seen.add((str(handle.run_dir), handle.job_id))
        found.append(handle)
    return found


def _search_dir(ref) -> Path | None:
    """A tune search's directory, given as itself or by its workers' array id; else None."""
    path = Path(ref)
    if not path.is_dir():
        path = records.lookup(str(ref).strip().split("_")[0]) or path
    return path if (path / SEARCH_RECORD).is_file() else None


def cmd_logs(args) -> int:
    found = locate(args.ref)
    if isinstance(found, JobArray):
        found = found[args.task]
    streams = ("out", "err") if args.stream == "both" else (args.stream,)
    if args.follow:
        paths = [found.log_path(args.rank, stream) for stream in streams]
        print(f"following job {found.job_id} rank {args.rank} ({', '.join(map(str, paths))}); "
              "stops when the job leaves the queue, or Ctrl-C", file=sys.stderr)
        try:
            follow(found.job_id, paths, lines=args.tail, interval_s=args.interval)
        except KeyboardInterrupt:
            print("", file=sys.stderr)
            return 130
        print(f"job {found.job_id} has left the queue: see `hpcnn status {found.job_id}`", file=sys.stderr)
        return 0
    texts = {stream: found.logs(args.rank, args.tail, stream) for stream in streams}
    for stream, text in texts.items():
        if text:
            if len(streams) > 1:
                print(f"==> {found.log_path(args.rank, stream)} <==")
            print(text)
    if not any(texts.values()):
        print(f"no log yet for job {found.job_id}{_queue_note(found.job_id)} rank {args.rank} "
              f"(expected {found.log_path(args.rank, 'out')})", file=sys.stderr)
    return 0


def _queue_note(job_id: str) -> str:
    """' (PENDING: Priority)' while the job waits in the queue, else ''."""
    try:
        queued = commands.squeue([job_id]).get(job_id)
    except SubmissionError:
        return ""
    return f" ({queued.state}{': ' + queued.reason if queued.reason else ''})" if queued else ""


def cmd_cancel(args) -> int:
    found = locate(args.ref)
    found.cancel()
    ids = found.array_ids if isinstance(found, JobArray) else [found.job_id]
    print(f"cancelled {', '.join(ids)}")
    return 0


def cmd_results(args) -> int:
    path = Path(args.sweep_dir)  # a folder of run directories (runs/): neither a sweep/group nor one submitted run
    if path.is_dir() and not any((path / name).is_file() for name in (records.SWEEP_FILE, *RUN_FILES)):
        metric, mode = args.metric or "val.accuracy", args.mode or "max"
        check_ranking(metric, mode, "--metric/--mode")
        rows = rank_run_dirs(args.sweep_dir, metric, mode)
        if not rows:
            raise HpcnnError(f"no run directories here (none holds {' or '.join(RUN_FILES)})",
                             str(args.sweep_dir), "pass runs/ (train.runs_dir), a sweep directory or a job id")
    else:
        found = locate(args.sweep_dir)
        if not isinstance(found, JobArray):
            raise HpcnnError("not a sweep or group directory (no sweep.json)", str(args.sweep_dir),
                             "use `hpcnn status` for a job")
        metric = args.metric or found.record.get("metric", "val.accuracy")
        check_ranking(metric, args.mode or found.record.get("mode", "max"), "--metric/--mode")
        rows = found.results(metric=metric, mode=args.mode)
    _print_results(rows, metric, args.json)
    return 0


def cmd_render(args) -> int:
    path, overrides = split_config_args(args.items)
    runs_dir = Path(args.runs_dir or load_job(path, overrides).train.runs_dir).expanduser().absolute()
    text = render(path, args.profile, resources(args), overrides, runs_dir=runs_dir, run_dir=args.run_dir,
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
    profiles = {name: load_profile(name) for name in list_profiles()}
    rows = [{"name": name, "description": p.description, "source": p.source} for name, p in profiles.items()]
    if args.json:
        print_json(rows)
    else:
        print(f"profiles in {profiles_dir()}:")
        if rows:
            print(table_text([(r["name"], r["description"]) for r in rows], indent="  "))
    return 0


def cmd_profiles_show(args) -> int:
    profile = load_profile(args.name)
    if args.json:
        print_json(dataclasses.asdict(profile))
        return 0
    docs = {name: text for name, _, text in field_docs(Profile)}
    print(f"# profile {profile.name} ({profile.source})")
    for key, value in dataclasses.asdict(profile).items():
        if key != "source":
            print(f"{key}: {json.dumps(value)}    # {docs.get(key, '')}")
    return 0


def _add_resources(parser) -> None:
    add_resource_flags(parser.add_argument_group("resources (override the config's slurm section)"))


def register(subparsers) -> None:
    s = intermixed(subparsers.add_parser("submit", help="pre-flight and submit a training job to Slurm (submitit)",
                              description="Submit one training job; prints its id and run directory and returns."))
    add_items(s)
    s.add_argument("--profile", help="site profile name or YAML path (default: the config's slurm.profile, else "
                                     "$HPCNN_PROFILE, else `profile:` in ~/.config/hpcnn/config.yaml)")
    _add_resources(s)
    s.add_argument("--run-dir", help="continue this run directory from its newest checkpoint (default: a new one)")
    s.add_argument("--dry-run", action="store_true", help="pre-flight and print the script; submit nothing")
    s.add_argument("--wait", action="store_true", help="stay until the job ends (default: return at once)")
    s.add_argument("--timeout", type=float, default=24 * 3600, help="seconds --wait waits at most")
    add_json(s)
    s.set_defaults(func=cmd_submit)

    w = intermixed(subparsers.add_parser("sweep", help="submit a sweep (grid or list of overrides) as one Slurm array",
                              description="Submit every task of SWEEP.yaml as one Slurm array job; given a sweep "
                                          "directory, resubmit only its failed, cancelled or missing tasks."))
    w.add_argument("sweep", metavar="SWEEP.yaml|SWEEP_DIR")
    w.add_argument("--resubmit", metavar="SWEEP_DIR", help="resubmit this sweep directory's failed, cancelled or "
                                                           "missing tasks (one array of just those indices)")
    w.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides for every task")
    w.add_argument("--profile")
    w.add_argument("--max-parallel", type=int, help="most tasks running at once (%%K)")
    _add_resources(w)
    w.add_argument("--dry-run", action="store_true")
    w.add_argument("--wait", action="store_true")
    w.add_argument("--timeout", type=float, default=24 * 3600)
    add_json(w)
    w.set_defaults(func=cmd_sweep)

    st = subparsers.add_parser("status", help="state and results of a job, run dir, sweep or group (one Slurm query)")
    st.add_argument("ref", nargs="?", metavar="JOB_ID|RUN_DIR|SWEEP_DIR|GROUP_DIR", help="default: recent submissions")
    st.add_argument("--limit", type=int, default=20)
    st.add_argument("--metric", help="also show (for a sweep or group directory: rank by) this numeric key of "
                                     "summary.json, e.g. images_per_second, wall_seconds, gpu.energy_j")
    st.add_argument("--mode", choices=["max", "min"], help="with --metric: bigger or smaller is better")
    add_json(st)
    st.set_defaults(func=cmd_status)

    lg = subparsers.add_parser("logs", help="a job's log (one rank)")
    lg.add_argument("ref", metavar="JOB_ID|RUN_DIR")
    lg.add_argument("--rank", type=int, default=0)
    lg.add_argument("--tail", type=int, default=40, help="last N lines (0 = all)")
    lg.add_argument("--stream", choices=["out", "err", "both"], default="both")
    lg.add_argument("--task", type=int, default=0, help="for a sweep directory: which task")
    lg.add_argument("-f", "--follow", action="store_true",
                    help="keep printing what the log gains (like tail -f) until the job leaves the queue")
    lg.add_argument("--interval", type=float, default=2.0, help="with --follow: seconds between looks (>= 1)")
    lg.set_defaults(func=cmd_logs)

    c = subparsers.add_parser("cancel", help="cancel a job, an array task or a whole sweep")
    c.add_argument("ref", metavar="JOB_ID|RUN_DIR|SWEEP_DIR")
    c.set_defaults(func=cmd_cancel)

    r = subparsers.add_parser("results", help="a sweep's, group's or runs folder's results, best first, failures with reasons")
    r.add_argument("sweep_dir", metavar="SWEEP_DIR|GROUP_DIR|RUNS_DIR|ARRAY_ID",
                   help="a sweep or group directory, an array id, or a folder of run directories (runs/)")
    r.add_argument("--metric", help="rank by this numeric key of summary.json, e.g. val.accuracy, "
                                    "images_per_second, wall_seconds (default: the sweep's metric)")
    r.add_argument("--mode", choices=["max", "min"], help="max: bigger is better (default: the sweep's mode)")
    add_json(r)
    r.set_defaults(func=cmd_results)

    rd = intermixed(subparsers.add_parser("render", help="write an sbatch script for a config (no Slurm needed)",
                               description="Render a ready sbatch script: resolved config inline, srun launch, "
                                           "self-requeue after a preemption checkpoint."))
    add_items(rd)
    rd.add_argument("--profile")
    _add_resources(rd)
    rd.add_argument("-o", "--output", help="write here instead of stdout")
    rd.add_argument("--runs-dir", help="where run directories go (default: the config's train.runs_dir, absolute)")
    rd.add_argument("--run-dir", help="a fixed run directory (default: RUNS_DIR/NAME-$SLURM_JOB_ID)")
    rd.add_argument("--python", help="interpreter on the compute nodes (default: profile's, else this one)")
    rd.set_defaults(func=cmd_render)

    pf = subparsers.add_parser("profiles", help="list or show site profiles")
    psub = pf.add_subparsers(dest="profiles_command", metavar="ACTION", required=True)
    pl = psub.add_parser("list", help="shipped profiles")
    add_json(pl)
    pl.set_defaults(func=cmd_profiles_list)
    ps = psub.add_parser("show", help="every field of one profile, with its meaning")
    ps.add_argument("name", metavar="NAME|PATH")
    add_json(ps)
    ps.set_defaults(func=cmd_profiles_show)
