"""Every `hpcnn ...` command shown in README.md and docs/*.md (```bash blocks) still works.

Each page's commands run in order, in one scratch folder of the page (so `hpcnn train ... --run-dir
runs/digits` then `hpcnn explain runs/digits` works as a reader would do it), through the real CLI
(``hpcnn.cli.main``, in this process: torch is imported once). Work is bounded the way a reader
would bound it: commands that train get tiny-data, one-epoch overrides appended, benchmarks one
short window, `data generate` a few images, and commands that submit to Slurm `--dry-run` (pre-flight
and the script on the local Slurm's `local` profile, nothing queued). Placeholders (RUN_DIR,
runs/default-2026..., SWEEP_DIR, images/) become fixtures: two tiny trained runs, a folder of them,
an image folder. A command that cannot run here (GPUs, the network, a real site, a job id of a
submitted job, torchrun/srun/horovodrun) is in SKIP with the reason and the test that covers it;
a documented command that is neither runnable nor in SKIP fails the test, so the docs cannot drift.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest

from tests.helpers import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Bounds appended to commands that train (later overrides win over the documented ones).
TRAIN_BOUNDS = ["train.epochs=1", "data.n_train=64", "data.n_val=32", "data.n_test=32", "data.image_size=16",
                "train.batch_size=16", "train.max_steps_per_epoch=2", "train.plots=false", "train.tensorboard=false",
                "train.threads=1", "monitor.enabled=false", "tensorboard.embeddings=false"]
BENCH_BOUNDS = ["--warmup", "1", "--steps", "1", "--windows", "1", "data.image_size=16", "train.batch_size=8",
                "train.threads=1", "monitor.enabled=false", "data.n_train=64", "data.n_val=32", "data.n_test=32"]
FLAG_BOUNDS = {("data", "generate"): {"--n": "40", "--size": "16"}}
SUBMITTING = ("submit", "sweep", "scale")   # get --dry-run: pre-flight + the script, nothing queued
CONFIRMING = {("runs", "rm"): "--yes"}      # would ask on a terminal; the scratch folder's runs may go

# Documented stand-ins -> what they stand for here (paths inside each page's scratch folder).
PLACEHOLDERS = {
    "runs/default-20261123-101500-ab12": "fixtures/run-a", "runs/pretrain-20261123-101500-ab12": "fixtures/run-a",
    "runs/simclr-galaxies-...": "fixtures/run-a", "RUN_DIR": "fixtures/run-a",
    "runs/default-A": "fixtures/runs/run-a", "runs/default-B": "fixtures/runs/run-b",
    "runs/default-C": "fixtures/run-a",
    "runs/lessons/lesson_shortcut/00-shortcut_marker": "fixtures/run-a",
    "runs/lessons/lesson_shortcut/01-shortcut_control": "fixtures/run-b",
    "runs/sweep-lr-20261129-110000-ab12": "fixtures/runs", "runs/sweep-sweep_lr-20261123-110000-ab12": "fixtures/runs",
    "runs/sweep-...": "fixtures/runs", "SWEEP_DIR": "fixtures/runs", "runs/group-scaling-...": "fixtures/runs",
    "runs/default-20261129-101500-ab12": "runs/run-a", "runs/sweep-lr-...": "runs/run-b",
    "images/": "fixtures/images/", "INPUT...": "fixtures/images", "/path/to/images": "fixtures/images", "job.yaml": "jobs/default.yaml",
    "/project/torch-cache": "torch-cache",
}

GPU = "asks for GPUs; this machine has none (tests/gpu/ and tests/slurm/test_gpu_request.py cover GPU requests)"
JOB_ID = "names a job id of a job you submitted (tests/slurm/test_submit.py covers status, logs and cancel by id)"
NET = "downloads from the internet, which tests do not (tests/integration/test_weights_fetch.py uses a local mirror)"
SLURM_DIR = "reads a directory that a real Slurm submission wrote (tests/slurm/ submit and follow them for real)"
LAUNCHER = "a multi-process launcher (tests/integration/test_ddp.py, test_horovod.py and tests/slurm/test_srun_train.py)"
SITE = "a real site's profile or paths (mysite, mycluster, nesi's placeholder account, /survey, /project)"

SKIP = {
    "bash scripts/setup.sh && .venv/bin/hpcnn train": "creates the .venv (scripts/test.sh runs it on CI)",
    "torchrun --nproc_per_node=2 -m hpcnn train": LAUNCHER,
    "torchrun --nproc_per_node=4 -m hpcnn bench jobs/x.yaml": LAUNCHER,
    "srun -N 2 --ntasks-per-node=4 python -m hpcnn bench jobs/x.yaml": LAUNCHER,
    "torchrun --nproc_per_node=8 -m hpcnn bench allreduce --sizes 1K..256M --iters 20": LAUNCHER,
    "torchrun --standalone --nproc_per_node=4 -m hpcnn train jobs/default.yaml": LAUNCHER,
    "torchrun --nproc_per_node=4 -m hpcnn train jobs/simclr_galaxies.yaml": LAUNCHER,
    "srun --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 python -m hpcnn train jobs/default.yaml": LAUNCHER,
    "horovodrun -np 4 -H localhost:4 python -m hpcnn train jobs/default.yaml dist.backend=horovod": LAUNCHER,
    "horovodrun -np 2 -H localhost:2 .venv/bin/python -m hpcnn train jobs/default.yaml dist.backend=horovod": LAUNCHER,
    "horovodrun -np 8 -H node1:4,node2:4 python -m hpcnn train jobs/default.yaml dist.backend=horovod": LAUNCHER,
    "torchrun --nproc_per_node=4 -m hpcnn predict RUN_DIR /survey/night-42 --out night-42.csv": LAUNCHER,
    "hpcnn submit jobs/default.yaml --profile mycluster --nodes 2 --gpus-per-node 4": SITE,
    "hpcnn submit jobs/simclr_galaxies.yaml slurm.gpus_per_node=4 dist.sync_batchnorm=true": GPU,
    "hpcnn predict RUN_DIR survey.h5 --out night-42.parquet --precision bf16 --channels-last": GPU,
    "hpcnn predict RUN_DIR /survey/2026 --out survey.csv --profile mysite --shards 64 --max-parallel 16 "
    "--gpus-per-node 1 --time 02:00:00 --precision bf16 --channels-last --num-workers 8": SITE,
    "hpcnn logs 1234 --rank 0 --tail 40 [--stream out|err|both]": JOB_ID,
    "hpcnn predict --collect survey.csv.shards": SLURM_DIR + "; tests/slurm/test_predict_array.py",
    "hpcnn status runs/sweep-sweep_lr-20261123-110000-ab12": SLURM_DIR + "; tests/slurm/test_arrays.py",
    "hpcnn status runs/group-scaling-...": SLURM_DIR + "; tests/slurm/test_mixed_resources.py",
    "hpcnn scale status runs/scale-local_cpu": SLURM_DIR + "; tests/slurm/test_scale_study.py",
    "hpcnn scale collect runs/scale-local_cpu": SLURM_DIR + "; tests/slurm/test_scale_study.py",
    "hpcnn scale check runs/scale-local_cpu": SLURM_DIR + "; tests/slurm/test_scale_study.py",
    "hpcnn status 1234": JOB_ID, "hpcnn status 81234": JOB_ID, "hpcnn cancel 1234": JOB_ID,
    "hpcnn logs 1234_3 --tail 50": JOB_ID, "hpcnn logs 1234_3 --follow": JOB_ID, "hpcnn logs 1234 --follow": JOB_ID,
    "hpcnn sweep runs/sweep-sweep_lr-20261123-110000-ab12": SLURM_DIR + "; tests/slurm/test_arrays.py",
    "hpcnn sweep runs/sweep-lr-20261129-110000-ab12": SLURM_DIR + "; tests/slurm/test_arrays.py",
    "hpcnn sweep runs/sweep-... --dry-run": SLURM_DIR + "; tests/slurm/test_arrays.py", "hpcnn top 12345": JOB_ID + "; tests/slurm/test_top.py",
    "hpcnn data fetch CIFAR10 --root /project/data/torchvision": NET,
    "hpcnn train data.source=torchvision data.name=CIFAR10 data.root=/project/data/torchvision data.image_size=32":
        "needs CIFAR-10 fetched first (tests/integration/test_torchvision_local.py builds a local copy)",
    "hpcnn weights fetch resnet18.IMAGENET1K_V1 resnet50 --cache /project/torch-cache": NET,
    "hpcnn weights fetch efficientnet_b0 --mirror https://mirror.example.org/pytorch/models/ --cache "
    "/project/torch-cache": NET,
    "HPCNN_WEIGHTS_MIRROR=/shared/pytorch-models hpcnn weights fetch convnext_tiny --cache /project/torch-cache": NET,
    "hpcnn train model.name=resnet18 model.weights=/project/weights/resnet18-finetuned.pth": SITE,
    "hpcnn lessons jobs/lessons/overfitting.yaml":
        "every lesson's tasks, trained (tests/integration/test_lessons.py runs the lessons, bounded)",
    "hpcnn lessons jobs/lessons/overfitting.yaml --task 1 train.epochs=10":
        "a lesson's task, trained (tests/integration/test_lessons.py)",
    "hpcnn lessons jobs/lessons/mlp_vs_cnn.yaml": "a lesson, trained (tests/integration/test_lessons.py)",
    "hpcnn lessons jobs/lessons/optimizers.yaml": "a lesson, trained (tests/integration/test_lessons.py)",
    "hpcnn lessons jobs/lessons/shortcut.yaml": "a lesson, trained (tests/integration/test_lessons.py)",
    "hpcnn lessons jobs/lessons/penalties.yaml": "a lesson, trained (tests/integration/test_lessons.py)",
}


def _commands_of(text: str) -> list[str]:
    """The hpcnn command lines of a page's ```bash blocks: continuations joined, comments dropped, words
    joined by one space (the SKIP keys)."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            words = shlex.split(line, comments=True)
            if _invokes_hpcnn(words):
                out.append(" ".join(words))
    return out


def _invokes_hpcnn(words: list[str]) -> bool:
    """``hpcnn ...``, ``VAR=x hpcnn ...``, ``.venv/bin/hpcnn``, ``... -m hpcnn[.module]`` (not a path such as
    ~/.config/hpcnn)."""
    commands = [w for w in words if "=" not in w or w.startswith("-")]
    return bool(commands) and (commands[0] == "hpcnn" or any(w.endswith("bin/hpcnn") for w in words) or any(
        a == "-m" and (b == "hpcnn" or b.startswith("hpcnn.")) for a, b in zip(words, words[1:])))


def documented() -> dict[str, list[str]]:
    return {page.name: _commands_of(page.read_text()) for page in PAGES}


def test_every_documented_command_is_runnable_or_skipped_with_a_reason():
    stale = sorted(set(SKIP) - {c for commands in documented().values() for c in commands})
    assert not stale, f"SKIP names commands no page shows any more: {stale}"
    unknown = [(page, c) for page, commands in documented().items() for c in commands
               if c not in SKIP and not c.startswith("hpcnn ")]
    assert not unknown, f"documented commands neither runnable here nor in SKIP: {unknown}"


def _without_optional_parts(words: list[str]) -> list[str]:
    """A synopsis's ``[--flag VALUE]`` parts left out: the command as written without them."""
    out, optional = [], False
    for word in words:
        optional = optional or word.startswith("[-")
        if not optional:
            out.append(word)
        elif word.endswith("]"):
            optional = False
    return out


def _substitute(word: str, verb: str) -> list[str]:
    for stand_in in sorted(PLACEHOLDERS, key=len, reverse=True):
        if stand_in in word:
            word = word.replace(stand_in, PLACEHOLDERS[stand_in])
            break
    if verb == "compare" and word == "fixtures/runs":  # a sweep's tasks: compare takes them one by one
        return ["fixtures/runs/run-a", "fixtures/runs/run-b"]
    return [word]


def _phase_bounds(argv: list[str]) -> list[str]:
    """One epoch per phase of the job file ``train ...`` names (train.epochs is not used with phases)."""
    from hpcnn.config import read_yaml

    config = next((a for a in argv[1:] if a.endswith(".yaml") and "=" not in a), None)
    phases = (read_yaml(config).get("phases") or []) if config else []
    return [f"phases[{i}].epochs=1" for i in range(len(phases))]


def bounded(command: str) -> list[str]:
    """The argv this test runs for a documented command: placeholders substituted, work bounded."""
    words = _without_optional_parts(command.split(" ")[1:])
    argv = [w for word in words for w in _substitute(word, words[0])]
    verb = tuple(argv[:2])
    if argv[0] == "train" and "--resume" not in argv:
        argv += TRAIN_BOUNDS + _phase_bounds(argv)
    elif argv[0] == "bench":
        argv += BENCH_BOUNDS
    elif verb in FLAG_BOUNDS:
        for flag, value in FLAG_BOUNDS[verb].items():
            if flag in argv:
                argv[argv.index(flag) + 1] = value
            else:
                argv += [flag, value]
    elif verb in CONFIRMING:
        argv.append(CONFIRMING[verb])
    elif argv[0] in SUBMITTING and argv[1:2] != ["model"] and "--dry-run" not in argv:
        argv.append("--dry-run")
    return argv


@pytest.fixture(scope="module", autouse=True)
def _torch_threads():
    """The bounded commands set train.threads=1 in this process; later tests get torch's setting back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    """Two tiny trained runs (run-a, run-b), the folder holding them, and a class-per-folder image folder."""
    from hpcnn.cli import main

    root = tmp_path_factory.mktemp("docs-fixtures")
    with _quiet(), _cwd(root):
        for name, seed in (("run-a", 0), ("run-b", 1)):
            assert main(["train", f"--run-dir=runs/{name}", f"seed={seed}", *TRAIN_BOUNDS]) == 0
        assert main(["data", "generate", "--out", "images", "--n", "40", "--size", "16", "--no-splits"]) == 0
    for name in ("run-a", "run-b"):
        shutil.copytree(root / "runs" / name, root / name)
    return root


@contextlib.contextmanager
def _cwd(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


@contextlib.contextmanager
def _quiet():
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            yield out
    finally:
        logging.getLogger("hpcnn").handlers.clear()  # setup_logging bound a handler to this buffer


def _scratch(tmp_path: Path, fixtures: Path, commands: list[str]) -> Path:
    (tmp_path / "jobs").symlink_to(REPO / "jobs")
    shutil.copytree(fixtures, tmp_path / "fixtures")
    if not any("data generate --out galaxies" in c for c in commands):  # data.root=galaxies/ without generating
        shutil.copytree(fixtures / "images", tmp_path / "galaxies")
    shutil.copytree(fixtures / "images", tmp_path / "data" / "galaxies")  # jobs/galaxies_folder.yaml's data.root
    shutil.copytree(fixtures / "runs", tmp_path / "runs")  # `hpcnn results runs/`, `hpcnn runs` find these
    (tmp_path / "path" / "to").mkdir(parents=True)
    shutil.copy2(REPO / "slurm_templates" / "profiles" / "local.yaml", tmp_path / "path" / "to" / "mysite.yaml")
    (tmp_path / "torch-cache").mkdir()
    return tmp_path


@pytest.mark.parametrize("page", [p.name for p in PAGES if any(
    c not in SKIP for c in _commands_of(p.read_text()))])
def test_documented_commands_work(page, fixtures, tmp_path, monkeypatch):
    from hpcnn.cli import main

    scratch = _scratch(tmp_path, fixtures, documented()[page])
    monkeypatch.setenv("HOME", str(tmp_path / "home"))      # job records and user config: this test's own
    monkeypatch.setenv("HPCNN_PROFILE", "local")             # a command without --profile: the local Slurm
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    failures = []
    for command in documented()[page]:
        if command in SKIP:
            continue
        argv = bounded(command)
        with _quiet() as out, _cwd(scratch):
            try:
                code = main(argv)
            except SystemExit as exit_:
                code = exit_.code
        if code not in (0, None):
            failures.append(f"{command}\n    ran: hpcnn {shlex.join(argv)}\n    exit {code}: "
                            + "\n    ".join(out.getvalue().strip().splitlines()[-6:]))
    assert not failures, f"{page}: documented commands that fail:\n" + "\n".join(failures)
