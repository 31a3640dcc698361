"""Two `hpcnn train` of one run directory at once: the second is refused in one line naming the first."""
from __future__ import annotations

import signal
import socket
import subprocess
import time

from hpcnn.rundir_lock import LOCK_NAME
from tests.helpers import PYTHON, REPO, TINY, run_hpcnn


def test_a_second_resume_of_a_running_run_is_refused_and_the_lock_goes_with_the_first(tmp_path):
    run, release = tmp_path / "run", tmp_path / "release"
    # the first job holds at global step 5 (a log point of TINY) until the release file appears
    first = subprocess.Popen([PYTHON, "-m", "tests.support.train_until_released", str(run), str(release), "5",
                              *TINY, "train.epochs=1"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "config.resolved.yaml").exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)  # waiting for a file the job writes (after taking the lock)
        assert (run / "config.resolved.yaml").exists(), first.communicate(timeout=30)[0]
        second = run_hpcnn("train", "--resume", run, timeout=120)
        lines = second.stderr.strip().splitlines()
        assert second.returncode == 2 and len(lines) == 1 and "Traceback" not in second.stderr, second.stderr[-2000:]
        assert lines[0].startswith(f"error: the run directory is in use by another job: host {socket.gethostname()}, "
                                   f"pid {first.pid}, since ") and f"({run})" in lines[0]
        assert "checkpoint" not in second.stdout  # it wrote nothing: no checkpoint, no metrics
        first.send_signal(signal.SIGTERM)  # preempted: it checkpoints at the next step and stops
        release.touch()
        out, _ = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == 1 and "received SIGTERM" in out, out[-2000:]  # status preempted
    assert not (run / LOCK_NAME).exists()  # released however the run ended
