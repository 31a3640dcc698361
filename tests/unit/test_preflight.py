"""Pre-flight: every login-node check fails with one clear message, and nothing is submitted."""
from __future__ import annotations

import pytest

from hpcnn.config import load_job
from hpcnn.errors import ConfigError, DatasetError, HpcnnError, ProfileError, ResourceError
from hpcnn.slurm.jobs import executor as executor_mod, groups as groups_mod, submission as submit_mod
from hpcnn.slurm.site.preflight import check_data, check_setup, check_weights, preflight
from hpcnn.slurm.site.profiles import load_profile, profile_from_dict
from hpcnn.slurm.site.resources import resolve


@pytest.fixture
def never_submit(monkeypatch):
    """Fail the test if anything tries to build an executor (i.e. reach sbatch)."""
    def boom(*a, **k):
        raise AssertionError("pre-flight let a bad request through to submission")

    monkeypatch.setattr(executor_mod, "make_executor", boom)


def cfg_with(tmp_path, *overrides):
    return load_job(None, [f"train.runs_dir={tmp_path / 'runs'}", *overrides])


def run_preflight(tmp_path, *overrides, profile="local"):
    cfg = cfg_with(tmp_path, *overrides)
    prof = load_profile(profile) if isinstance(profile, str) else profile
    preflight([cfg], prof, resolve(cfg, prof), tmp_path / "runs")


def test_a_good_request_passes_and_creates_runs_dir(tmp_path):
    run_preflight(tmp_path)
    assert (tmp_path / "runs").is_dir()


@pytest.mark.parametrize("overrides, error, message", [
    (["data.source=folder", "data.root=/nonexistent/galaxies"], DatasetError, "data.root does not exist"),
    (["data.source=hdf5", "data.root={tmp}"], DatasetError, "must be a file for data.source=hdf5"),
    (["data.source=folder", "data.root={tmp}/file.txt"], DatasetError, "must be a directory"),
    (["model.name=resnet18", "model.weights=/nonexistent/resnet18.pth"], ConfigError, "model.weights file not found"),
    (["model.name=resnet18", "model.weights=DEFAULT", "model.weights_cache={tmp}/cache"], ConfigError,
     "on a login node run: hpcnn weights fetch resnet18.IMAGENET1K_V1 --cache {tmp}/cache"),
    (["model.name=resnet18", "model.weights=IMAGENET1K_V2"], ConfigError, "torchvision has no weights IMAGENET1K_V2"),
    (["model.weights={tmp}"], ConfigError, "has no checkpoints/best.pt or checkpoints/model_final.pt"),
    (["slurm.gpus_per_node=4"], ResourceError, "exceeds the 2 GPUs"),
    (["slurm.time=2-00:00:00"], ResourceError, "exceeds the site limit"),
    (["train.device=cuda"], ResourceError, "train.device is cuda but slurm.gpus_per_node is 0"),
    (["dist.backend=horovod", "slurm.gpus_per_node=2"], ResourceError, "horovodrun"),
])
def test_each_failure_is_one_clear_message(tmp_path, overrides, error, message):
    (tmp_path / "file.txt").write_text("x")
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    message = message.replace("{tmp}", str(tmp_path))
    with pytest.raises(error) as err:
        run_preflight(tmp_path, *overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_existing_data_and_weights_pass(tmp_path):
    (tmp_path / "data").mkdir()
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"\0")
    cfg = cfg_with(tmp_path, "data.source=folder", f"data.root={tmp_path / 'data'}", "model.name=resnet18",
                   f"model.weights={weights}")
    check_data(cfg)
    check_weights(cfg)
    run = tmp_path / "run"  # an hpcnn run directory to start from
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(b"\0")
    check_weights(cfg_with(tmp_path, f"model.weights={run}"))
    cached = tmp_path / "cache" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"  # fetched beforehand
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"\0")
    check_weights(cfg_with(tmp_path, "model.name=resnet18", "model.weights=DEFAULT",
                           f"model.weights_cache={tmp_path / 'cache'}"))


def test_runs_dir_must_be_writable(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = load_job(None, [f"train.runs_dir={blocker / 'runs'}"])
    prof = load_profile("local")
    with pytest.raises(ConfigError, match="train.runs_dir is not writable"):
        preflight([cfg], prof, resolve(cfg, prof), blocker / "runs")


def test_runs_dir_slurm_cannot_use(tmp_path):
    with pytest.raises(ConfigError, match="file-name pattern"):
        cfg = cfg_with(tmp_path)
        prof = load_profile("local")
        preflight([cfg], prof, resolve(cfg, prof), tmp_path / "runs%j")


def test_setup_lines_are_checked_where_possible(tmp_path):
    env = tmp_path / "env.sh"
    env.write_text("export X=1\n")
    check_setup(profile_from_dict({"setup": ["module load cuda", f"source {env}", "source $HOME/unknowable",
                                             f". {env}  # comment"]}))
    with pytest.raises(ProfileError, match="sources a file that does not exist: /nonexistent/venv/bin/activate"):
        check_setup(profile_from_dict({"setup": ["source /nonexistent/venv/bin/activate"]}))
    with pytest.raises(ProfileError, match="not valid shell"):
        check_setup(profile_from_dict({"setup": ["echo 'unterminated"]}))


def test_profile_python_must_exist(tmp_path):
    with pytest.raises(ProfileError, match="not an executable"):
        run_preflight(tmp_path, profile=profile_from_dict({"python": "/nonexistent/bin/python", "max_nodes": 2}))


def test_submit_runs_preflight_before_anything_is_queued(tmp_path, never_submit):
    with pytest.raises(ResourceError):
        submit_mod.submit(None, "local", {"gpus_per_node": 3}, [f"train.runs_dir={tmp_path / 'runs'}"])
    with pytest.raises(DatasetError):
        groups_mod.submit_array(None, grid={"optim.lr": [0.1, 0.2]}, profile="local",
                                overrides=["data.source=folder", "data.root=/nonexistent",
                                           f"train.runs_dir={tmp_path / 'runs'}"])
    assert not list((tmp_path / "runs").glob("*")), "no run directory is created for a refused submission"


def test_dry_run_plan_needs_no_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    plan = submit_mod.plan_job(None, "generic", {"gpus_per_node": 1}, [f"train.runs_dir={tmp_path / 'runs'}"])
    assert "#SBATCH --gres=gpu:1" in plan.script and str(plan.run_dir / "submitit") in plan.script
    with pytest.raises(HpcnnError, match="cannot submit from here|not found"):
        submit_mod.submit(None, "generic", {"gpus_per_node": 1}, [f"train.runs_dir={tmp_path / 'runs'}"])


def test_horovod_backend_needs_horovod_or_a_module(tmp_path):
    from hpcnn.slurm.site.preflight import check_horovod

    cfg = cfg_with(tmp_path, "dist.backend=horovod")
    missing = lambda name: None  # noqa: E731 - a login node without Horovod
    with pytest.raises(ConfigError, match="Horovod is not installed") as err:
        check_horovod(cfg, load_profile("local"), find_spec=missing)
    assert "build_horovod.sh" in str(err.value) and "module load horovod" in str(err.value)
    import dataclasses

    site = dataclasses.replace(load_profile("local"), setup=["module load horovod/0.28.1"])
    check_horovod(cfg, site, find_spec=missing)  # the nodes get it from the site's module
    check_horovod(cfg_with(tmp_path), load_profile("local"), find_spec=missing)  # other backends: no check


# ---------------------------------------------------------------- data checks on the login node (issue 20, item 2)
def image_folder(root, counts: dict) -> str:
    """root/<class>/NNN.png, empty files: pre-flight counts names, only the job opens images."""
    for name, n in counts.items():
        (root / name).mkdir(parents=True)
        for i in range(n):
            (root / name / f"{i:03d}.png").write_bytes(b"")
    return str(root)


def test_a_folder_smaller_than_one_global_batch_fails_preflight_and_nothing_is_queued(tmp_path, never_submit):
    root = image_folder(tmp_path / "imgs", {"cat": 17, "dog": 17})   # 34 images, batch 128
    with pytest.raises(DatasetError) as err:
        submit_mod.submit(None, "local", None, ["data.source=folder", f"data.root={root}", "train.batch_size=128",
                                                f"train.runs_dir={tmp_path / 'runs'}"])
    text = str(err.value)
    assert "\n" not in text and text.startswith("the training split has 22 images, fewer than one global batch (128")
    assert f"{root}: 34 images in 2 classes" in text and "lower train.batch_size" in text
    assert not list((tmp_path / "runs").glob("*"))


def test_the_global_batch_counts_the_ranks_the_request_starts(tmp_path):
    root = image_folder(tmp_path / "imgs", {"a": 60, "b": 60})   # 84 training images after the 15%/15% split
    run_preflight(tmp_path, "data.source=folder", f"data.root={root}", "train.batch_size=64")
    with pytest.raises(DatasetError, match=r"fewer than one global batch \(128: train.batch_size 32 per rank x 4"):
        run_preflight(tmp_path, "data.source=folder", f"data.root={root}", "train.batch_size=32",
                      "train.batch_scope=per_rank", "slurm.gpus_per_node=2", "slurm.nodes=2", "train.device=cpu")
    with pytest.raises(DatasetError, match="the training split has 100 images, fewer than one global batch"):
        run_preflight(tmp_path, "data.n_train=100", "train.batch_size=128")            # synthetic: from the config
    with pytest.raises(DatasetError, match="the training split has 10 images"):
        run_preflight(tmp_path, "data.source=digits", "data.max_per_class=1", "train.batch_size=64")


@pytest.mark.parametrize("layout, message", [
    ({}, "no images found under"),
    ({"only": 5}, "holds a single class folder (only)"),
    ({"a": 50, "b": 0}, "holds no image files"),
    ({"train/a": 50, "train/b": 50, "val/a": 5}, "class folders of {root}/val differ"),
    ({"train/a": 50, "test/a": 5}, "holds only split folders (test, train)"),
])
def test_class_folders_are_checked_before_queueing(tmp_path, layout, message):
    root = tmp_path / "imgs"
    root.mkdir()
    image_folder(root, layout)
    with pytest.raises(DatasetError) as err:
        run_preflight(tmp_path, "data.source=folder", f"data.root={root}", "train.batch_size=8")
    assert message.replace("{root}", str(root)) in str(err.value)


def test_split_folders_and_class_selection_count_as_the_job_does(tmp_path):
    root = image_folder(tmp_path / "imgs", {"train/a": 40, "train/b": 30, "train/c": 5, "val/a": 3, "val/b": 3,
                                             "val/c": 0})
    run_preflight(tmp_path, "data.source=folder", f"data.root={root}", "train.batch_size=75")
    with pytest.raises(DatasetError, match="the training split has 70 images"):
        run_preflight(tmp_path, "data.source=folder", f"data.root={root}", "train.batch_size=75",
                      "data.classes=[a,b]")
    with pytest.raises(DatasetError, match="data.classes names classes the data does not have: z"):
        run_preflight(tmp_path, "data.source=folder", f"data.root={root}", "data.classes=[a,z]")


# ---------------------------------------------------------------- placeholders in shipped profiles (item 3)
@pytest.mark.parametrize("name, key", [("nesi", "account"), ("perlmutter", "account")])
def test_a_shipped_placeholder_fails_preflight_naming_the_profile_file(tmp_path, never_submit, name, key):
    profile = load_profile(name)
    with pytest.raises(ProfileError) as err:
        submit_mod.plan_job(None, name, {"time": "01:00:00"}, [f"train.runs_dir={tmp_path / 'runs'}"])
    text = str(err.value)
    assert text.startswith(f"{key} is the placeholder <") and f"({profile.source})" in text
    assert f"--{key} VALUE" in text and "\n" not in text
    plan = submit_mod.plan_job(None, name, {"time": "01:00:00", key: "proj123"},
                               [f"train.runs_dir={tmp_path / 'runs'}"])
    assert f"--{key}=proj123" in plan.script
