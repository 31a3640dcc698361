"""Model factory: every built-in model and torchvision models by name, weights from a local file."""
from __future__ import annotations

import pytest
import torch

from hpcnn.config import load_job
from hpcnn.errors import ConfigError
from hpcnn.models import create_model


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


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0", "vgg11", "squeezenet1_0", "vit_b_16"])
def test_heads_of_other_families(name):
    model = create_model(model_cfg(f"model.name={name}"), num_classes=3, in_channels=3, image_size=224)
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 3)


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="weights file not found"):
        create_model(model_cfg("model.name=resnet18", f"model.weights={tmp_path / 'nope.pth'}"), 3, 3, 32)
