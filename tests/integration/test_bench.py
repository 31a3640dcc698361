"""hpcnn bench on real processes: one rank in-process, two gloo ranks under torchrun, the allreduce sweep.

Bounded in steps; no timing asserts — only that the numbers are consistent with each other.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess

import pytest

from hpcnn.bench.allreduce import fit_alpha_beta
from hpcnn.bench.run import bench_from_dict, bench_job
from hpcnn.cli import main
from hpcnn.config import load_job, to_dict
from hpcnn.data.synthetic import write_image_folder
from tests.helpers import PYTHON, REPO

SMALL = ["data.image_size=16", "model.channels=[8,16]", "model.hidden=[32]", "train.batch_size=16",
         "train.threads=1", "train.log_every=2"]
KEYS = {"images_per_second", "step_time_s", "world_size", "nodes", "hosts_per_rank", "device", "batch_size_per_rank",
        "global_batch_size", "precision", "gradient_bytes", "bucket_bytes", "gpu", "config_name", "hpcnn_version"}


def check_consistent(r: dict, steps: int, windows: int) -> None:
    assert KEYS <= r.keys()
    ips = r["images_per_second"]
    assert ips["min"] <= ips["median"] <= ips["max"] and ips["min"] > 0
    assert len(r["window_seconds"]) == windows
    for rate, seconds in zip(r["images_per_second_windows"], r["window_seconds"]):
        assert rate * seconds == pytest.approx(r["global_batch_size"] * steps, rel=1e-9)
    st = r["step_time_s"]
    parts = st["split_data"] + st["compute"] + (st["comm"] or 0.0) + st["optimizer"]
    # the four intervals are contiguous stamps of the same steps: they add up to the instrumented total
    assert parts == pytest.approx(st["split_total"], rel=1e-9, abs=1e-9)
    assert st["compute"] > 0 and st["optimizer"] > 0 and st["total"] > 0
    assert st["total"] == pytest.approx(statistics.median(r["window_seconds"]) / steps, rel=1e-9)
    assert r["global_batch_size"] == r["batch_size_per_rank"] * r["world_size"]
    assert r["nodes"] == sorted(set(r["hosts_per_rank"])) and len(r["hosts_per_rank"]) == r["world_size"]
    assert r["gpu"] is None and r["precision"] == "fp32"  # CPU here


def test_bench_one_rank_synthetic_contract(tmp_path):
    out = tmp_path / "b.json"
    cfg = load_job(None, SMALL + ["name=tinybench"])
    result = bench_from_dict(to_dict(cfg), out, warmup=1, steps=3, windows=3)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    check_consistent(result, 3, 3)
    assert result["config_name"] == "tinybench" and result["world_size"] == 1 and result["data"] == "synthetic"
    assert result["step_time_s"]["comm"] == 0.0  # one process: nothing to average, no interval timed
    n_params = 8 * 3 * 9 + 8 + 16 * 8 * 9 + 16 + 2 * (8 + 16)  # convs, BatchNorms
    assert result["gradient_bytes"] > 4 * n_params  # + the dense head, float32


def test_bench_compute_grows_with_the_batch(tmp_path):
    """The split's compute is forward+backward of the batch: 64x the images take longer (not a time bound)."""
    shape = ["data.image_size=32", "model.channels=[8,16]", "model.hidden=[32]", "train.threads=1"]
    split = {}
    for batch in (2, 128):
        cfg = load_job(None, shape + [f"train.batch_size={batch}"])
        result = bench_from_dict(to_dict(cfg), tmp_path / f"b{batch}.json", warmup=1, steps=4, windows=1)
        split[batch] = result["step_time_s"]
        assert split[batch]["comm"] == 0.0 and result["batch_size_per_rank"] == batch
    assert split[128]["compute"] > 2 * split[2]["compute"]


def test_bench_real_jpeg_folder_shows_data_wait(tmp_path):
    write_image_folder(tmp_path / "img", 96, size=20, seed=1, fmt="jpg")
    cfg = load_job(None, SMALL + ["data.source=folder", f"data.root={tmp_path / 'img'}"])
    result = bench_job(cfg, None, data="real", warmup=1, steps=2, windows=2)
    check_consistent(result, 2, 2)
    assert result["data"] == "real" and result["decode"] == "cpu"  # auto on a CPU: PIL in the workers
    assert result["step_time_s"]["data"] > 0 and result["num_classes"] == 8


def test_bench_gpu_decode_without_gpu_is_a_clear_error(tmp_path, capsys):
    code = main(["bench", *SMALL, "data.source=folder", f"data.root={tmp_path}", "data.decode=gpu", "--data", "real"])
    err = capsys.readouterr().err
    assert code == 2 and "data.decode is gpu but this job runs on the CPU" in err and "Traceback" not in err


def torchrun(*args, timeout=240, ranks=2):
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}", "-m", "hpcnn", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_bench_two_gloo_ranks(tmp_path):
    out = tmp_path / "b2.json"
    proc = torchrun("bench", *SMALL, "--warmup", "1", "--steps", "2", "--windows", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    check_consistent(r, 2, 2)
    assert r["world_size"] == 2 and r["backend"] == "gloo" and r["global_batch_size"] == 16
    assert r["batch_size_per_rank"] == 8
    assert r["step_time_s"]["comm"] > 0  # measured explicitly, bucket by bucket
    assert r["bucket_bytes"] and sum(r["bucket_bytes"]) == r["gradient_bytes"]


@pytest.mark.skipif(shutil.which("strace") is None and os.environ.get("CI") != "true",
                    reason="needs strace (tests/slurm/cluster.sh install brings it; CI must run this)")
def test_bench_on_a_folder_lists_it_once_per_job(tmp_path):
    """Two ranks of `hpcnn bench --data real` list and verify the folder once, as training does (was: each rank)."""
    root = tmp_path / "img"
    write_image_folder(root, 400, size=16, seed=1)
    calls = {}
    for ranks in (1, 2):
        (root / ".hpcnn-verified.json").unlink(missing_ok=True)
        log = tmp_path / f"strace{ranks}.log"
        launch = [PYTHON, "-m", "hpcnn"] if ranks == 1 else [PYTHON, "-m", "torch.distributed.run", "--standalone",
                                                             "--nproc_per_node=2", "-m", "hpcnn"]
        proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(log), *launch, "bench", *SMALL,
                               "data.source=folder", f"data.root={root}", "data.num_workers=0", "--data", "real",
                               "--warmup", "0", "--steps", "1", "--windows", "1"],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        calls[ranks] = sum(f'"{root}' in line for line in log.read_text(errors="replace").splitlines())
    assert calls[1] >= 2 * 400  # a stat and a verifying open per file, at least
    assert calls[2] <= 1.2 * calls[1], calls  # each rank's own batches only on top


@pytest.mark.parametrize("ranks, factor", [(3, 4 / 3), (4, 3 / 2)])
def test_allreduce_sweep_bus_bandwidth_and_fit_on_three_and_four_gloo_ranks(tmp_path, ranks, factor):
    """Where 2(N-1)/N is not 1 (at N = 2 it is), a missing or wrong factor shows: busbw = algbw * 4/3, * 3/2."""
    out = tmp_path / "ar.json"
    proc = torchrun("bench", "allreduce", "--sizes", "1K..8K", "--iters", "2", "--warmup", "1", "--out", str(out),
                    ranks=ranks)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())
    assert r["world_size"] == ranks and r["backend"] == "gloo"
    assert [row["bytes"] for row in r["rows"]] == [1024 * 2**k for k in range(4)]
    for row in r["rows"]:
        assert row["algbw_bytes_per_s"] == pytest.approx(row["bytes"] / row["time_s"], rel=1e-12)
        assert row["busbw_bytes_per_s"] == pytest.approx(row["algbw_bytes_per_s"] * factor, rel=1e-12)
    # the fit ran with N = ranks (alpha = a / (2(N-1)), beta = (2(N-1)/N) / b; the branches: tests/unit/test_bench.py)
    fitted = fit_alpha_beta([row["bytes"] for row in r["rows"]], [row["time_s"] for row in r["rows"]], ranks)
    assert (r["alpha_s"], r["beta_bytes_per_s"]) == pytest.approx(fitted, rel=1e-12)
    assert r["alpha_s"] > 0 and r["beta_bytes_per_s"] > 0
    assert "busbw(GB/s)" in proc.stdout and '"alpha_s"' in proc.stdout


def test_allreduce_on_one_rank_says_how_to_launch(capsys):
    assert main(["bench", "allreduce"]) == 2
    err = capsys.readouterr().err
    assert "at least 2 ranks" in err and "torchrun" in err


def test_train_with_gpu_decode_on_cpu_fails_before_loading_data(tiny, tmp_path, capsys):
    assert main(["train", *tiny, "data.source=folder", f"data.root={tmp_path / 'absent'}", "data.decode=gpu"]) == 2
    err = capsys.readouterr().err
    assert "data.decode is gpu but this job runs on the CPU" in err  # not "image folder not found": checked first
