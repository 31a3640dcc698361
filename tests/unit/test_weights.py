"""Pretrained-weights references: names, the cache layout torch uses, the file a job reads, loading with a report."""
from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlparse

import pytest
import torch
import torchvision

from hpcnn.config import load_job
from hpcnn.config.weights_names import (HASH_REGEX, cache_root, checkpoints_dir, fetch_command, is_weights_name,
                                        parse_weights_name, refs_for_file, weights_ref, weights_source,
                                        weights_table)
from hpcnn.errors import CheckpointError, ConfigError
from hpcnn.models.registry import build_model
from hpcnn.models.loading import load_matching, read_state_dict
from hpcnn.models.weights import builder_kwargs, weights_normalization, weights_preprocessing
from tests.helpers import REPO

SQUEEZE = "squeezenet1_1-b8a52dc0.pth"  # torchvision's file for squeezenet1_1.IMAGENET1K_V1 (= DEFAULT)


def model_cfg(*overrides):
    return load_job(None, list(overrides)).model


def test_hash_prefix_is_found_as_torch_hub_finds_it():
    assert HASH_REGEX.pattern == torch.hub.HASH_REGEX.pattern
    prefixes = [parse_weights_name(f"{m}.{e}").hash_prefix for m, (_, _, files) in weights_table().items()
                for e in files]
    assert all(len(p) >= 8 for p in prefixes), "every torchvision file name carries a verifiable hash"
    assert parse_weights_name("resnet18").hash_prefix == "f37072fd"


@pytest.mark.parametrize("model, value, entry", [
    ("resnet50", "DEFAULT", "IMAGENET1K_V2"),
    ("resnet50", "IMAGENET1K_V1", "IMAGENET1K_V1"),
    ("resnet50", "ResNet50_Weights.IMAGENET1K_V1", "IMAGENET1K_V1"),
    ("resnet50", "resnet50.DEFAULT", "IMAGENET1K_V2"),
    ("vit_b_16", "IMAGENET1K_SWAG_E2E_V1", "IMAGENET1K_SWAG_E2E_V1"),
])
def test_weights_names_resolve_like_torchvision(model, value, entry):
    ref = weights_ref(model, value)
    assert ref.entry == entry
    enum_value = torchvision.models.get_model_weights(model)[entry]
    assert ref.url == enum_value.url and ref.name == f"{model}.{entry}"


@pytest.mark.parametrize("model, value, message", [
    ("resnet18", "IMAGENET1K_V2", "did you mean IMAGENET1K_V1"),
    ("resnet18", "ResNet50_Weights.IMAGENET1K_V1", "are the weights of resnet50, but model.name is resnet18"),
    ("resnet18", "Foo_Weights.DEFAULT", "unknown weights"),
    ("simple_cnn", "DEFAULT", "model.name=simple_cnn has none"),
])
def test_bad_weights_names_say_what_would_work(model, value, message):
    with pytest.raises(ConfigError, match=message) as err:
        weights_ref(model, value)
    assert "\n" not in str(err.value)


def test_fetch_names():
    assert parse_weights_name("resnet50").entry == "IMAGENET1K_V2"  # a model alone = its DEFAULT
    assert parse_weights_name("ResNet50_Weights.IMAGENET1K_V1").name == "resnet50.IMAGENET1K_V1"
    with pytest.raises(ConfigError, match="did you mean resnet18"):
        parse_weights_name("resnet81.DEFAULT")
    assert [r.name for r in refs_for_file(SQUEEZE)] == ["squeezenet1_1.IMAGENET1K_V1"]


@pytest.mark.parametrize("value, is_name", [
    ("DEFAULT", True), ("IMAGENET1K_V2", True), ("resnet18.IMAGENET1K_V1", True), ("ResNet18_Weights.DEFAULT", True),
    ("./DEFAULT", False), ("resnet18.pth", False), ("runs/base-20260101-000000-ab12", False), ("best", False),
    ("/w/resnet18-f37072fd.pth", False), (None, False),
])
def test_names_and_paths_are_told_apart(value, is_name):
    assert is_weights_name(value) is is_name


def test_cache_root_follows_torch(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "xdg" / "torch"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    assert cache_root() == tmp_path / "th"
    assert cache_root(str(tmp_path / "explicit")) == tmp_path / "explicit"


def test_cache_layout_is_where_torch_hub_looks(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for name in ("resnet18.IMAGENET1K_V1", "vit_b_16.IMAGENET1K_SWAG_E2E_V1", "efficientnet_b0"):
        ref = parse_weights_name(name)
        url = torchvision.models.get_weight(f"{ref.enum}.{ref.entry}").url
        torch_path = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(urlparse(url).path))
        assert checkpoints_dir(cache_root()) / ref.file_name == type(tmp_path)(torch_path)


def test_uncached_weights_name_the_fetch_command(tmp_path):
    cfg = model_cfg("model.name=resnet18", "model.weights=DEFAULT", f"model.weights_cache={tmp_path}")
    with pytest.raises(ConfigError) as err:
        weights_source(cfg)
    assert f"hpcnn weights fetch resnet18.IMAGENET1K_V1 --cache {tmp_path}" in str(err.value)
    assert fetch_command([parse_weights_name("resnet18")], "/a b") == "hpcnn weights fetch resnet18.IMAGENET1K_V1 " \
                                                                       "--cache '/a b'"
    cached = checkpoints_dir(tmp_path) / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"x")
    assert weights_source(cfg) == cached


def test_run_directory_weights(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    cfg = model_cfg(f"model.weights={run}")
    with pytest.raises(ConfigError, match="has no checkpoints/best.pt or checkpoints/model_final.pt"):
        weights_source(cfg)
    (run / "checkpoints" / "model_final.pt").write_bytes(b"x")
    assert weights_source(cfg).name == "model_final.pt"
    (run / "checkpoints" / "best.pt").write_bytes(b"x")
    assert weights_source(cfg).name == "best.pt"
    with pytest.raises(ConfigError, match="model.weights file not found"):
        weights_source(model_cfg(f"model.weights={tmp_path / 'nope.pth'}"))
    with pytest.raises(ConfigError, match="written in capitals: DEFAULT or resnet18.DEFAULT"):
        weights_source(model_cfg("model.name=resnet18", "model.weights=resnet18"))


TORCH_FREE_CHECK = """
import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None
from hpcnn.config import load_job
from hpcnn.slurm.site.preflight import check_weights
cfg = load_job(None, ['model.name=squeezenet1_1', 'model.weights=DEFAULT', 'model.weights_cache=' + sys.argv[1]])
try:
    check_weights(cfg)
except Exception as err:
    print(err)
"""


def test_preflight_needs_no_torch_to_find_uncached_weights(tmp_path):
    proc = subprocess.run([sys.executable, "-c", TORCH_FREE_CHECK, str(tmp_path)], capture_output=True, text=True,
                          timeout=60, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert f"hpcnn weights fetch squeezenet1_1.IMAGENET1K_V1 --cache {tmp_path}" in proc.stdout


def test_named_weights_load_from_the_cache_and_the_head_is_replaced(tmp_path):
    torch.manual_seed(0)
    imagenet = torchvision.models.squeezenet1_1()  # stands in for the real file: same names, same shapes
    cached = checkpoints_dir(tmp_path) / SQUEEZE
    cached.parent.mkdir(parents=True)
    torch.save(imagenet.state_dict(), cached)
    cfg = model_cfg("model.name=squeezenet1_1", "model.weights=DEFAULT", f"model.weights_cache={tmp_path}")
    model, report = build_model(cfg, num_classes=4, in_channels=3, image_size=64)
    assert torch.equal(model.features[0].weight, imagenet.features[0].weight)
    assert set(report["skipped"]) == {"classifier.1.weight", "classifier.1.bias"}  # 1000 ImageNet classes -> 4
    assert report["backbone"]["loaded"] == report["backbone"]["total"] > 0 and not report["missing"]
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 4)


def test_normalisation_comes_from_the_weights_metadata():
    cfg = model_cfg("model.name=squeezenet1_1", "model.weights=DEFAULT")
    expected = torchvision.models.SqueezeNet1_1_Weights.DEFAULT.transforms()
    assert weights_normalization(cfg) == (list(expected.mean), list(expected.std))
    assert weights_preprocessing(cfg)["crop_size"] == [224]
    assert weights_normalization(model_cfg("model.name=squeezenet1_1", "model.weights=DEFAULT",
                                           "model.preprocess_from_weights=false")) is None
    assert weights_normalization(model_cfg("model.name=squeezenet1_1", "model.weights=/w/own.pth")) is None
    assert weights_normalization(model_cfg("model.name=squeezenet1_1")) is None


def test_architecture_is_built_as_torchvision_builds_it_for_the_weights():
    assert builder_kwargs("vit_b_16", "IMAGENET1K_SWAG_E2E_V1") == {"image_size": 384}
    assert builder_kwargs("googlenet", "DEFAULT")["transform_input"] is True
    assert builder_kwargs("googlenet", None) == {"aux_logits": False, "init_weights": True}
    assert builder_kwargs("resnet18", "DEFAULT") == {} and builder_kwargs("resnet18", "/w/r.pth") == {}


def test_state_dict_files_of_other_shapes(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    wrapped = tmp_path / "ddp.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    assert set(read_state_dict(wrapped)) == set(model.state_dict())
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read weights file"):
        read_state_dict(tmp_path / "junk.pt")
    torch.save({"epoch": 3}, tmp_path / "meta.pt")
    with pytest.raises(ConfigError, match="holds no state_dict"):
        read_state_dict(tmp_path / "meta.pt")


def test_loading_reports_and_refuses_another_architecture(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    state = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    state["2.weight"] = torch.ones(5, 4)  # an old head for 5 classes
    state["extra.weight"] = torch.ones(1)
    del state["0.bias"]
    report = load_matching(model, state, "old.pt")
    assert report["skipped"] == {"2.weight": "(5, 4) -> (2, 4)"} and report["missing"] == ["0.bias"]
    assert report["unused"] == ["extra.weight"] and report["backbone"] == {"loaded": 5, "total": 6}
    assert torch.equal(model[0].weight, torch.ones(3 * 4 * 9).view(4, 3, 3, 3))
    other = {"0.weight": torch.ones(8, 3, 3, 3), "1.num_batches_tracked": torch.tensor(0)}  # the counter proves nothing
    with pytest.raises(ConfigError, match="0 of 6 backbone tensors of net match /w/other.pt") as err:
        load_matching(model, other, "/w/other.pt", "net")
    assert "was it trained with model.name=net" in str(err.value)
