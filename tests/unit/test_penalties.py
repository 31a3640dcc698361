"""Explicit L1/L2 weight penalties (optim.l1, optim.l2): which tensors, what value, what gradient, and off at 0."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hpcnn.config import load_job
from hpcnn.errors import ConfigError
from hpcnn.train.penalties import penalised, weight_penalty


def small_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5)).eval()


def built(model: nn.Module) -> nn.Module:
    model(torch.zeros(1, 3, 6, 6))  # materialise the lazy layer
    return model


def test_off_when_both_are_zero():
    model = built(small_model())
    assert weight_penalty(model, 0.0, 0.0) is None  # the loop then does nothing extra


def test_only_trainable_weight_tensors_are_penalised():
    model = built(small_model())
    model[0].weight.requires_grad_(False)  # frozen: not penalised
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in penalised(model)) == ["3.weight"]  # no biases, no BatchNorm, no frozen


def test_value_is_l1_sum_abs_plus_l2_sum_squares():
    model = built(small_model())
    weights = [model[0].weight, model[3].weight]
    expected = sum(0.01 * w.abs().sum() + 0.1 * w.square().sum() for w in weights)
    value = weight_penalty(model, l1=0.01, l2=0.1)()
    assert torch.allclose(value, expected)
    assert torch.allclose(weight_penalty(model, l1=0.01)(), sum(0.01 * w.abs().sum() for w in weights))


def test_gradient_is_l1_sign_plus_two_l2_w():
    model = built(small_model())
    weight_penalty(model, l1=0.5, l2=0.25)().backward()
    w = model[0].weight
    assert torch.allclose(w.grad, 0.5 * w.sign() + 0.5 * w.detach())
    assert model[0].bias.grad is None and model[1].weight.grad is None


def test_l2_penalty_is_coupled_weight_decay_not_adamws_decoupled_one():
    """An L2 penalty l2 * sum w^2 is torch's (coupled) weight_decay 2 * l2 for SGD and Adam; AdamW's is not."""
    x = torch.randn(8, 3, 6, 6)

    def step(opt_name: str, l2: float, decay: float) -> torch.Tensor:
        model = built(small_model())
        params = [model[0].weight, model[3].weight]
        opt = getattr(torch.optim, opt_name)(params, lr=0.1, weight_decay=decay)
        loss = model(x).square().mean()
        penalty = weight_penalty(model, l2=l2)
        (loss + penalty() if penalty else loss).backward()
        opt.step()
        return model[3].weight.detach().clone()

    assert torch.allclose(step("SGD", 0.05, 0.0), step("SGD", 0.0, 0.1), atol=1e-6)
    assert torch.allclose(step("Adam", 0.05, 0.0), step("Adam", 0.0, 0.1), atol=1e-6)
    assert not torch.allclose(step("Adam", 0.05, 0.0), step("AdamW", 0.0, 0.1), atol=1e-4)


def test_config_keys_are_checked():
    cfg = load_job(None, ["optim.l1=0.0001", "optim.l2=0.001"])
    assert (cfg.optim.l1, cfg.optim.l2) == (0.0001, 0.001)
    with pytest.raises(ConfigError, match="optim.l2"):
        load_job(None, ["optim.l2=-1"])
