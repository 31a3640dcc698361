"""`hpcnn lessons LESSON.yaml`: a course lesson's tasks trained here in turn, with the numbers it is about.

torch is imported only when the command runs (``hpcnn.lessons``); docs/lessons.md has the lessons.
"""
from __future__ import annotations

from .args import add_json, intermixed, print_json


def cmd_lessons(args) -> int:
    from ..lessons import format_rows, run_lesson

    rows = run_lesson(args.lesson, args.overrides, args.runs_dir, args.task)
    print_json(rows) if args.json else print(format_rows(rows))
    return 0


def register(subparsers) -> None:
    p = intermixed(subparsers.add_parser(  # `LESSON --task 1 key=value`: overrides after options
        "lessons", help="run a course lesson's tasks here in turn (jobs/lessons/), with train/val/test accuracy",
        description="The course lessons (jobs/lessons/*.yaml) run locally, task after task, with the numbers each "
                    "one is about; the rows also go to RUNS_DIR/<lesson name>/lesson.json. docs/lessons.md."))
    p.add_argument("lesson", help="a sweep file, e.g. jobs/lessons/overfitting.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="overrides for every task")
    p.add_argument("--runs-dir", default="runs/lessons", help="run directories go to RUNS_DIR/<lesson name>/")
    p.add_argument("--task", type=int, action="append", help="run only this task (repeatable)")
    add_json(p, help="print the rows as JSON")
    p.set_defaults(func=cmd_lessons)
