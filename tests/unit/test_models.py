"""Model factory: every built-in model and torchvision models by name, weights from a local file or another model."""
from __future__ import annotations

import pytest
import torch

from hpcnn.config import load_job
from hpcnn.errors import ConfigError
from hpcnn.models import create_model
from hpcnn.models.registry import build_model


def model_cfg(*overrides):
    return load_job(None, list(overrides)).model


@pytest.mark.parametrize("name", ["mlp", "simple_cnn", "resnet_small"])
@pytest.mark.parametrize("init", ["default", "kaiming", "xavier", "orthogonal"])
def test_builtin_models_forward(name, init):
    model = create_model(model_cfg(f"model.name={name}", f"model.init={init}"), num_classes=7, in_channels=3,
                         image_size=32)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_torchvision_model_head_replaced_and_local_weights(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = create_model(model_cfg("model.name=resnet18", f"model.weights={path}"), num_classes=5, in_channels=3,
                         image_size=32)
    assert model.fc.out_features == 5
    assert torch.equal(model.conv1.weight, reference.conv1.weight)  # backbone weights came from the file
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 5)


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "vgg11", "squeezenet1_0", "vit_b_16", "googlenet"])
def test_heads_of_other_families(name):
    model = create_model(model_cfg(f"model.name={name}"), num_classes=3, in_channels=3, image_size=224)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)


def test_auxiliary_classifiers_are_off():
    """hpcnn trains one output: GoogLeNet returns logits, not a tuple with its auxiliary heads, in training too."""
    model = create_model(model_cfg("model.name=googlenet"), num_classes=3, in_channels=3, image_size=64).train()
    assert isinstance(model(torch.randn(2, 3, 64, 64)), torch.Tensor)


@pytest.mark.parametrize("source", ["simple_cnn", "resnet_small", "mlp"])
def test_builtin_models_start_from_a_state_dict_with_another_head(tmp_path, source):
    """hpcnn's own models are backbones too: all but the last layer loads, the head for 10 classes is skipped."""
    cfg = model_cfg(f"model.name={source}", "model.channels=[8,16]", "model.width=8", "model.depth=[1,1]")
    old = create_model(cfg, num_classes=10, in_channels=3, image_size=16)
    torch.save(old.state_dict(), tmp_path / "old.pt")
    cfg.weights = str(tmp_path / "old.pt")
    model, report = build_model(cfg, num_classes=4, in_channels=3, image_size=16)
    assert len(report["skipped"]) == 2 and all(k.startswith(report["head"] + ".") for k in report["skipped"])
    assert report["backbone"]["loaded"] == report["backbone"]["total"] and not report["missing"]
    assert all(torch.equal(v, old.state_dict()[k]) for k, v in model.state_dict().items() if k not in report["skipped"])


def test_a_state_dict_of_another_architecture_is_refused(tmp_path):
    torch.save(create_model(model_cfg("model.name=simple_cnn"), 10, 3, 16).state_dict(), tmp_path / "cnn.pt")
    with pytest.raises(ConfigError, match=f"backbone tensors of resnet_small match {tmp_path / 'cnn.pt'}"):
        create_model(model_cfg("model.name=resnet_small", f"model.weights={tmp_path / 'cnn.pt'}"), 10, 3, 16)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="weights file not found"):
        create_model(model_cfg("model.name=resnet18", f"model.weights={tmp_path / 'nope.pth'}"), 3, 3, 32)
