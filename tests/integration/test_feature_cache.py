"""A head-only phase on cached backbone features learns what the uncached path learns, faster."""
from __future__ import annotations

import json

from tests.helpers import TINY, run_hpcnn

HEAD = ["data.source=synthetic", "data.channels=3", "data.image_size=32", "data.n_train=800", "data.n_val=200",
        "data.n_test=200", "phases=[{name: head, epochs: 4, trainable: head}]"]


def summary(run_dir):
    return json.loads((run_dir / "summary.json").read_text())


def test_cached_features_match_the_uncached_head_and_are_reused(tmp_path):
    plain, cached = tmp_path / "plain", tmp_path / "cached"
    p = run_hpcnn("train", *TINY, *HEAD, "train.cache_features=never", f"--run-dir={plain}")
    assert p.returncode == 0, p.stderr
    c = run_hpcnn("train", *TINY, *HEAD, "train.cache_features=always", f"--run-dir={cached}")
    assert c.returncode == 0, c.stderr
    assert "head on cached features" in c.stdout and "head on cached features" not in p.stdout
    files = list((cached / "features").glob("head-train-*.pt"))
    assert len(files) == 1
    a, b = summary(plain), summary(cached)
    assert abs(a["metrics"]["test"]["accuracy"] - b["metrics"]["test"]["accuracy"]) <= 0.01
    # a resumed run (here: two more epochs) reuses the features instead of recomputing them
    r = run_hpcnn("train", "--resume", cached, "phases=[{name: head, epochs: 6, trainable: head}]")
    assert r.returncode == 0, r.stderr
    assert f"training the head on cached features {files[0].name}" in r.stdout
    assert summary(cached)["epochs_run"] == 6


def test_always_explains_why_it_cannot_cache():
    p = run_hpcnn("train", *TINY, *HEAD, "train.cache_features=always", "data.augment.hflip=true")
    assert p.returncode == 2 and "data.augment" in p.stderr and "train.cache_features" in p.stderr
    p = run_hpcnn("train", *TINY, *HEAD[:-1], "phases=[{trainable: top:1}]", "train.cache_features=always")
    assert p.returncode == 2 and "more than the head" in p.stderr


def test_a_model_that_transforms_its_heads_output_is_not_cached(tmp_path):
    """SqueezeNet flattens after its classifier: training the head on features would train something else."""
    args = [*TINY, "data.source=synthetic", "data.channels=3", "data.image_size=32", "data.n_train=128",
            "data.n_val=64", "data.n_test=0", "model.name=squeezenet1_1", "phases=[{epochs: 1, trainable: head}]"]
    p = run_hpcnn("train", *args, f"--run-dir={tmp_path / 'run'}")
    assert p.returncode == 0, p.stderr
    assert "not caching features: squeezenet1_1 does more after its head" in p.stdout
    p = run_hpcnn("train", *args, "train.cache_features=always", f"--run-dir={tmp_path / 'again'}")
    assert p.returncode == 2 and "transforms the head's output" in p.stderr
