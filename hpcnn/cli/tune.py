"""`hpcnn tune SEARCH.yaml --profile SITE [--dry-run]` and `hpcnn tune status DIR`: searches from the login node.

The search is checked, pre-flighted and queued (one array of workers) without the training stack;
``status`` replays the study's journal. Torch-free; Optuna is loaded only where a command needs it.
"""
from __future__ import annotations

from ..errors import ConfigError
from ..tune.status import format_report, report
from ..tune.submit import plan_tune, submit_tune
from .args import add_json, print_json

EXAMPLE = "hpcnn tune jobs/tune_digits.yaml --profile local   |   hpcnn tune status runs/tune-digits-..."


def cmd_tune(args) -> int:
    items = list(args.items)
    if items[0] == "status":
        if len(items) != 2:
            raise ConfigError("hpcnn tune status takes one search directory", None, EXAMPLE)
        rep = report(items[1], plots=args.plots)
        print_json(rep) if args.json else print(format_report(rep))
        return 0
    if len(items) != 1:
        raise ConfigError(f"hpcnn tune takes one search file (or search directory), got {' '.join(items)}", None,
                          EXAMPLE)
    plan = (plan_tune if args.dry_run else submit_tune)(items[0], args.profile, workers=args.workers)
    search = plan.search
    head = {"search_dir": str(plan.search_dir), "workers": plan.workers, "profile": plan.profile.name,
            "metric": search.metric, "direction": search.direction, "space": list(search.space),
            "budget": {"trials": search.spec.budget.trials, "gpu_hours": search.spec.budget.gpu_hours},
            "cost_at_most": plan.cost.describe()}
    if args.json:
        print_json({**head, "dry_run": args.dry_run})
    elif args.dry_run:
        print(f"# dry run: {plan.workers} worker(s) as one array on site '{plan.profile.name}'; "
              f"search dir would be {plan.search_dir}; cost: at most {head['cost_at_most']}")
        print(plan.script, end="")
    else:
        print(f"queued {plan.workers} worker(s) for search '{search.spec.name}' ({search.direction} {search.metric}, "
              f"{len(search.space)} keys); cost: at most {head['cost_at_most']}")
        print(f"search directory: {plan.search_dir}")
        print(f"follow it: hpcnn tune status {plan.search_dir}")
    return 0


def register(sub) -> None:
    t = sub.add_parser("tune", help="hyperparameter search: K Slurm workers pull trials, bad ones pruned early",
                       description="Queue a search (one Slurm array of workers) and return, or read one: "
                                   "`hpcnn tune status DIR`. See docs/tuning.md.")
    t.add_argument("items", nargs="+", metavar="SEARCH",
                   help="a search file (SEARCH.yaml), a search directory (more workers for it), or: status DIR")
    t.add_argument("--profile", help="site profile (default: the job config's slurm.profile)")
    t.add_argument("--dry-run", action="store_true", help="check and pre-flight, print the script; queue nothing")
    t.add_argument("--workers", type=int, help="K array tasks (default: the search file's workers.count)")
    add_json(t, help="machine-readable output")
    t.add_argument("--plots", action="store_true", help="status: also write history.png and importance.png")
    t.set_defaults(func=cmd_tune)


__all__ = ["register"]
