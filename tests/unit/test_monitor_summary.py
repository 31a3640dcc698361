"""The per-job GPU summary across nodes: series files as 4 ranks on 2 nodes would write them."""
from __future__ import annotations

import json

import pytest

from hpcnn.monitor import summarize, summary_lines
from hpcnn.monitor.report import make_report, stage_bands


def write_job(run_dir, *, train=20, util=90.0, slow_clock=1980, hot_fraction=0.0, mem_used=60_000, xid_on=None,
              ecc_uncorrected=0):
    """2 nodes x 2 GPUs, one rank each; 20 train samples 1 s apart, then 5 eval samples.

    GPU 1 on n2 runs at ``slow_clock`` and is thermally throttled for ``hot_fraction`` of training.
    """
    (run_dir / "gpu").mkdir(parents=True)
    rank = 0
    for host in ("n1", "n2"):
        for gpu in (0, 1):
            odd = (host, gpu) == ("n2", 1)
            rows = []
            for i in range(train + 5):
                stage = "train" if i < train else "eval"
                row = {"time": 1000.0 + i, "host": host, "gpu": gpu, "rank": rank, "stage": stage, "phase": "train",
                       "epoch": i // 10, "step": 10 * i, "util_percent": util if stage == "train" else 20.0,
                       "mem_used_mib": mem_used, "mem_total_mib": 80_000.0, "power_w": 400.0,
                       "power_limit_w": 700.0, "energy_j": 5000.0 + 400.0 * i, "temp_c": 60.0,
                       "sm_clock_mhz": slow_clock if odd else 1980, "ecc_corrected": 0, "ecc_uncorrected": 0,
                       "throttle": ["hw thermal"] if odd and i < train * hot_fraction else []}
                if odd and i == train + 4:
                    row["ecc_uncorrected"] = ecc_uncorrected
                if xid_on == (host, gpu) and i == 7:
                    row["xid"] = [79]
                rows.append(row)
            (run_dir / "gpu" / f"rank{rank}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            rank += 1


def rules(summary):
    return {a["rule"] for a in summary["advice"]}


def test_a_healthy_job_needs_no_advice(tmp_path):
    write_job(tmp_path)
    s = summarize(tmp_path, images=96_000, data_wait_fraction=0.01)
    assert s["gpus"] == 4 and s["nodes"] == 2 and s["samples"] == 100
    assert s["stages"]["train"] == {"seconds": 20.0, "util_mean_percent": 90.0, "util_p5_percent": 90.0}
    assert s["stages"]["eval"]["util_mean_percent"] == 20.0
    assert s["energy_j"] == pytest.approx(4 * 400 * 24) and s["energy_wh"] == pytest.approx(4 * 400 * 24 / 3600, 1e-3)
    assert s["images_per_joule"] == pytest.approx(96_000 / (4 * 400 * 24), 1e-3)
    assert s["per_gpu"][0]["mem_max_mib"] == 60_000 and s["mem_max_fraction"] == 0.75
    assert s["slowest_gpu"]["straggler"] is False
    assert s["advice"] == [] and s["errors"]["xid"] == []


def test_straggler_throttling_and_errors_are_named_with_their_node(tmp_path):
    write_job(tmp_path, slow_clock=1500, hot_fraction=0.5, xid_on=("n1", 0), ecc_uncorrected=2)
    s = summarize(tmp_path, data_wait_fraction=0.0)
    slow = s["slowest_gpu"]
    assert (slow["host"], slow["gpu"], slow["straggler"]) == ("n2", 1, True)
    assert slow["ratio"] == pytest.approx(1500 / 1980, abs=1e-3)
    assert s["throttle_seconds"] == {"hw thermal": 10.0}
    odd = next(g for g in s["per_gpu"] if (g["host"], g["gpu"]) == ("n2", 1))
    assert odd["throttle_seconds"] == {"hw thermal": 10.0} and odd["ecc_uncorrected"] == 2
    assert s["errors"]["xid"] == [{"host": "n1", "gpu": 0, "xid": 79}] and s["errors"]["ecc_uncorrected"] == 2
    assert rules(s) == {"straggler", "throttling", "errors"}
    advice = {a["rule"]: a for a in s["advice"]}
    assert "node n2" in advice["straggler"]["advice"] and "1500 MHz" in advice["straggler"]["evidence"]
    assert "report to the site" in advice["throttling"]["advice"]
    assert "hw thermal 50%" in advice["throttling"]["evidence"]
    assert "GPU 0 on n1" in advice["errors"]["evidence"] and "79" in advice["errors"]["evidence"]


def test_throttling_is_reported_from_its_threshold_on(tmp_path):
    write_job(tmp_path / "a", train=40, hot_fraction=1 / 40)   # 2.5% of training
    assert "throttling" not in rules(summarize(tmp_path / "a"))
    write_job(tmp_path / "b", train=40, hot_fraction=2 / 40)   # 5%
    assert "throttling" in rules(summarize(tmp_path / "b"))


def test_low_utilisation_with_data_wait_points_at_the_input_pipeline(tmp_path):
    write_job(tmp_path, util=45.0)
    s = summarize(tmp_path, data_wait_fraction=0.35, num_workers=2)
    assert rules(s) == {"input_bound"}
    item = s["advice"][0]
    assert "data.num_workers (now 2)" in item["advice"] and "35%" in item["evidence"] and "45%" in item["evidence"]
    # the same utilisation without data wait: not the input pipeline
    assert rules(summarize(tmp_path, data_wait_fraction=0.02)) == {"underused"}


def test_memory_headroom_gives_the_growth_factor(tmp_path):
    write_job(tmp_path, mem_used=8_000.0)
    s = summarize(tmp_path)
    item = next(a for a in s["advice"] if a["rule"] == "memory_headroom")
    assert "at least x8.5" in item["advice"] and "8000 of 80000 MiB" in item["evidence"]
    assert "a lower bound" in item["advice"] and "upper bound" not in item["advice"]


def test_summary_lines_and_report(tmp_path):
    write_job(tmp_path, slow_clock=1500, hot_fraction=0.5)
    s = summarize(tmp_path)
    lines = summary_lines(s)
    assert lines[0].startswith("GPU: 4 GPU(s) on 2 node(s)")
    assert any("a straggler" in line and "on n2" in line for line in lines)
    assert any(line.startswith("GPU advice: report to the site") for line in lines)
    md, pngs = make_report(tmp_path)
    assert [p.name for p in pngs] == ["gpu_utilisation.png", "gpu_memory.png", "gpu_power.png", "gpu_clocks.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    text = md.read_text()
    assert "| n2 | 1 |" in text and "![gpu_clocks](gpu_clocks.png)" in text and "straggler" in text


def test_data_bound_epochs_are_marked_in_summary_and_report(tmp_path):
    write_job(tmp_path)
    records = [{"epoch": 0, "train": {"seconds": 10.0, "data_seconds": 5.0}},
               {"epoch": 1, "train": {"seconds": 10.0, "data_seconds": 0.1}}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    s = summarize(tmp_path, epoch_data_wait={0: 0.5, 1: 0.01})
    assert s["data_bound"] == {"epochs": [0], "util_mean_percent": 90.0, "util_p5_percent": 90.0}
    assert summarize(tmp_path)["data_bound"] is None
    assert any(line.startswith("data-bound epochs (input wait >= 20%): 1;") for line in summary_lines(s))
    md, _ = make_report(tmp_path)
    assert "data-bound epochs (input wait >= 20%): 1;" in md.read_text()


def test_stage_bands_follow_the_series():
    rows = [{"time": t, "stage": s} for t, s in [(0, "train"), (60, "train"), (120, "eval"), (180, "checkpoint"),
                                                  (240, "train")]]
    assert stage_bands(rows, 0) == [(2.0, 3.0, "eval"), (3.0, 4.0, "checkpoint")]


def test_report_without_samples_is_one_clear_error(tmp_path):
    from hpcnn.errors import HpcnnError

    with pytest.raises(HpcnnError, match="no GPU samples"):
        make_report(tmp_path)
