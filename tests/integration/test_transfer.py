"""Transfer learning is real: the jobs/ few-shot lesson, measured; the frozen phase on 2 gloo ranks."""
from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers import PYTHON, REPO, run_hpcnn

pytestmark = pytest.mark.slow
FAST = ["train.plots=false", "train.tensorboard=false", "monitor.enabled=false", "train.log_every=50"]


def _test_accuracy(run_dir) -> float:
    return json.loads((run_dir / "summary.json").read_text())["metrics"]["test"]["accuracy"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("fewshot") / "pretrain"
    proc = run_hpcnn("train", "jobs/fewshot_pretrain.yaml", *FAST, f"--run-dir={run_dir}", timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_pretrained_backbone_beats_scratch_on_unseen_few_shot_classes(pretrained, tmp_path):
    transfer, scratch = tmp_path / "transfer", tmp_path / "scratch"
    p = run_hpcnn("train", "jobs/fewshot_transfer.yaml", *FAST, f"model.weights={pretrained}",
                  f"--run-dir={transfer}", timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    s = run_hpcnn("train", "jobs/fewshot_scratch.yaml", *FAST, f"--run-dir={scratch}", timeout=600)
    assert s.returncode == 0, s.stderr[-3000:]
    summary = json.loads((transfer / "summary.json").read_text())
    assert summary["weights"]["backbone_loaded"] == summary["weights"]["backbone_total"] > 0
    # the old head has the right shape but was trained on other classes: not loaded
    assert summary["weights"]["skipped"] and all(k.startswith("1.") for k in summary["weights"]["skipped"])
    assert summary["classes"] == ["smooth_inbetween", "barred_spiral", "ring", "merger"]
    a, b = _test_accuracy(transfer), _test_accuracy(scratch)
    print(f"\nfew-shot (20 images/class, 4 unseen classes): transfer {a:.3f} vs scratch {b:.3f}")
    assert a - b >= 0.10, f"transfer {a:.3f} is not 10 points above scratch {b:.3f}"


FROZEN_CHECK = """
import json, sys, torch
from hpcnn.config import load_job
from hpcnn.run import run_job
from hpcnn.train.events import Callback

out, run_dir, *overrides = sys.argv[1:]

class Check(Callback):
    def on_run_start(self, trainer):
        self.start = {k: v.clone() for k, v in trainer.raw_model.state_dict().items()}
    def on_phase_end(self, trainer, phase):
        if phase.index == 0:
            head = trainer.raw_model.state_dict()
            changed = [k for k in self.start if not k.startswith("1.") and not torch.equal(self.start[k], head[k])]
            trained = any(not torch.equal(self.start[k], head[k]) for k in self.start if k.startswith("1."))
            with open(f"{out}.{trainer.comm.rank}", "w") as f:
                json.dump({"changed": changed, "head_trained": trained, "tensors": len(self.start)}, f)

run_job(load_job(None, overrides), run_dir, callbacks=[Check()])
"""


@pytest.mark.dist
def test_frozen_phase_changes_no_backbone_tensor_on_two_ranks(pretrained, tmp_path):
    script = tmp_path / "check.py"
    script.write_text(FROZEN_CHECK)
    out = tmp_path / "result"
    phases = ("phases=[{name: head, epochs: 1, trainable: head, freeze_bn: true}, "
              "{name: finetune, epochs: 1, optim: {lr: 0.0003}}]")
    cmd = [PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), str(out),
           str(tmp_path / "run"), *FAST, "train.batch_size=64", "data.image_size=32",
           "data.n_train=400", "data.n_val=100", "data.n_test=100", f"model.weights={pretrained}",
           "train.cache_features=never", phases]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rank in (0, 1):
        result = json.loads((tmp_path / f"result.{rank}").read_text())
        assert result["changed"] == [], f"rank {rank}: phase 1 changed backbone tensors {result['changed']}"
        assert result["head_trained"] and result["tensors"] > 20
