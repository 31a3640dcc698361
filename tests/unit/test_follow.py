"""`hpcnn logs --follow`: new bytes only, a header per file, and it ends when the job leaves the queue."""
from __future__ import annotations

from hpcnn.slurm.jobs.follow import MIN_INTERVAL_S, Tail, follow


def test_tail_returns_only_what_was_appended(tmp_path):
    log = tmp_path / "0_log.out"
    tail = Tail(log)
    assert tail.start(5) == "" and tail.new_text() == ""  # not there yet
    log.write_text("one\ntwo\n")
    assert tail.new_text() == "one\ntwo\n" and tail.new_text() == ""
    with open(log, "a") as f:
        f.write("three\n")
    assert tail.new_text() == "three\n"
    log.write_text("requeued\n")  # shorter: a new log, read from its start
    assert tail.new_text() == "requeued\n"


def test_follow_prints_the_tail_then_new_lines_until_the_job_is_gone(tmp_path):
    out, err = tmp_path / "1_0_log.out", tmp_path / "1_0_log.err"
    out.write_text("".join(f"line {i}\n" for i in range(50)))
    written: list[str] = []
    rounds = []

    def still_queued(job_id: str) -> bool:  # the job writes between two looks, then leaves the queue
        rounds.append(job_id)
        if len(rounds) == 1:
            with open(out, "a") as f:
                f.write("epoch 1 done\n")
            err.write_text("a warning\n")
        return len(rounds) < 2

    follow("1_0", [out, err], lines=3, interval_s=0.01, write=written.append, still_queued=still_queued)
    text = "".join(written)
    assert text.startswith(f"==> {out} <==\nline 47\nline 48\nline 49\n")
    assert text.endswith(f"epoch 1 done\n==> {err} <==\na warning\n") and rounds == ["1_0", "1_0"]
    assert MIN_INTERVAL_S >= 1.0  # interval_s=0.01 was raised to it: never a busy loop
