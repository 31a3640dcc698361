"""A real training job that holds at one global step until a file appears (for tests of live views).

    python -m tests.support.train_until_released RUN_DIR RELEASE_FILE HOLD_STEP [overrides...]

Every rank holds at the same log point (so no rank waits in a collective), polling for
RELEASE_FILE; after ``HOLD_TIMEOUT_S`` without it the job fails instead of hanging.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from hpcnn.config import load_job
from hpcnn.run import run_job
from hpcnn.train.events import Callback

HOLD_TIMEOUT_S = 240


class HoldAt(Callback):
    def __init__(self, step: int, release: Path):
        self.step, self.release = step, release

    def on_log(self, trainer, p) -> None:
        if p.global_step != self.step:
            return
        deadline = time.monotonic() + HOLD_TIMEOUT_S
        while not self.release.exists():
            if time.monotonic() > deadline:
                raise SystemExit(f"{self.release} did not appear within {HOLD_TIMEOUT_S} s")
            time.sleep(0.1)


def main() -> int:
    run_dir, release, step, *overrides = sys.argv[1:]
    result = run_job(load_job(None, overrides), Path(run_dir), callbacks=[HoldAt(int(step), Path(release))])
    return 0 if result.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(main())
