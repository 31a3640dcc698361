"""What a training rank imports: only what it uses (each import costs every rank thousands of file-system calls).

A real 2-rank job (torchrun, gloo) on synthetic data, each rank listing its ``sys.modules`` at the end. Rank 0
plots and writes TensorBoard (matplotlib, tensorboard, by default); rank 1 does neither; no rank imports
scikit-learn or scipy (the metrics are numpy), nor what only the login node uses (Slurm, Jinja, Optuna).
"""
from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from tests.helpers import PYTHON, REPO

pytestmark = [pytest.mark.dist, pytest.mark.slow]  # one 2-rank job, ~30 s

JOB = ["data.source=synthetic", "data.channels=3", "data.image_size=16", "data.n_train=128", "data.n_val=64",
       "data.n_test=64", "model.channels=[4]", "model.hidden=[8]", "train.epochs=1", "train.max_steps_per_epoch=1",
       "train.batch_size=32", "train.threads=1", "train.device=cpu", "dist.backend=gloo", "monitor.enabled=false"]
# the rank's job: hpcnn.run, as `hpcnn train` runs it, then its modules written down
RANK = textwrap.dedent("""
    import json, os, sys
    from hpcnn.config import load_job
    from hpcnn.run import run_job
    run_job(load_job(None, sys.argv[2:]), sys.argv[1])
    with open(os.path.join(sys.argv[1], f"modules-{os.environ['RANK']}.json"), "w") as f:
        json.dump(sorted(sys.modules), f)
""")
NEVER = ("sklearn", "scipy", "optuna", "pandas", "submitit")  # no rank uses them on this job
RANK0_ONLY = ("matplotlib", "tensorboard")  # plots and TensorBoard: rank 0 writes them


def imported(modules: list[str], packages) -> list[str]:
    return sorted({m.split(".")[0] for m in modules} & set(packages))


@pytest.fixture(scope="module")
def rank_modules(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("job") / "run"
    script = run_dir.parent / "rank.py"
    script.write_text(RANK)
    proc = subprocess.run([PYTHON, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script),
                           str(run_dir), *JOB], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((run_dir / f"modules-{rank}.json").read_text()) for rank in (0, 1)]


def test_no_rank_imports_what_the_job_does_not_use(rank_modules):
    for rank, modules in enumerate(rank_modules):
        assert imported(modules, NEVER) == [], f"rank {rank}"


def test_only_rank_0_imports_plotting_and_tensorboard(rank_modules):
    assert imported(rank_modules[0], RANK0_ONLY) == list(RANK0_ONLY)  # it did plot and write events
    assert imported(rank_modules[1], RANK0_ONLY) == []


def test_a_rank_does_not_import_the_slurm_stack(rank_modules):
    """hpcnn.slurm and Jinja are the login node's: a rank never submits or renders a job."""
    for rank, modules in enumerate(rank_modules):
        assert "hpcnn.slurm" not in modules and imported(modules, ("jinja2",)) == [], f"rank {rank}"


def test_the_packages_lazy_slurm_names_are_hpcnn_slurms_api():
    import hpcnn
    import hpcnn.slurm

    assert hpcnn._SLURM == set(hpcnn.slurm.__all__)
    assert hpcnn.submit is hpcnn.slurm.submit
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hpcnn.nope  # noqa: B018


def test_hpcnn_train_loads_only_its_own_front_end():
    """`torchrun -m hpcnn train` on 64 ranks: no rank imports the Slurm, tune or scale front ends."""
    code = ("import sys; from hpcnn.cli import build_parser; build_parser('train'); "
            "print(sorted(m for m in sys.modules if m.startswith(('hpcnn.slurm', 'hpcnn.tune', 'hpcnn.scale', "
            "'hpcnn.cli.jobs', 'jinja2'))))")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    from hpcnn.cli import build_parser

    def train_help(parser):
        sub = next(a for a in parser._actions if a.dest == "command")
        return sub.choices["train"].format_help()

    assert train_help(build_parser("train")) == train_help(build_parser())
