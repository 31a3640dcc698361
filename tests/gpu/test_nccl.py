"""NCCL, AMP and channels_last on a real GPU. Skipped cleanly where CUDA is absent (CI, laptops)."""
from __future__ import annotations

import json
import subprocess

import pytest
import torch

from tests.helpers import PYTHON, REPO

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")]


def test_one_gpu_nccl_run_of_default_config(tmp_path):
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m", "hpcnn", "train",
           f"train.runs_dir={tmp_path}", "dist.backend=nccl", "train.amp=bf16", "train.channels_last=true"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(next(tmp_path.glob("*/summary.json")).read_text())
    assert "NVIDIA" in summary["device"] or "H100" in summary["device"]
    assert summary["metrics"]["val"]["accuracy"] >= 0.90
    assert "backend nccl" in proc.stdout and summary["world_size"] == 1
    # real NVML: the job's summary carries GPU telemetry and energy
    gpu = summary["gpu"]
    assert gpu["samples"] >= 2 and gpu["util_max_percent"] > 0 and gpu["energy_j"] > 0
    assert gpu["energy_per_image_j"] > 0
