"""`hpcnn explain`: Grad-CAM checked on a model with a known answer, the target layer, and the CLI end to end."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from hpcnn.errors import HpcnnError
from hpcnn.explain import conv_blocks, gradcam, target_layer
from hpcnn.models.resnet_small import resnet_small
from hpcnn.models.simple_cnn import simple_cnn
from tests.helpers import TINY, run_hpcnn

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def channel_detector() -> nn.Module:
    """Two 1x1 conv detectors (channel c sees input channel c only); logit c = mean of detector c's map."""
    conv = nn.Conv2d(2, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        conv.bias.zero_()
    return nn.Sequential(nn.Sequential(conv, nn.ReLU()), nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()))


def test_heat_lies_where_the_evidence_for_the_class_is():
    # class 0's evidence (input channel 0) fills the top-left quadrant, class 1's the bottom-right one;
    # a heatmap of brightness alone would light both, a uniform or random one neither
    x = torch.rand(4, 2, 32, 32) * 0.05
    x[:, 0, :16, :16] += 1.0
    x[:, 1, 16:, 16:] += 1.0
    top_left = torch.zeros(32, 32, dtype=torch.bool)
    top_left[:16, :16] = True
    bottom_right = torch.zeros(32, 32, dtype=torch.bool)
    bottom_right[16:, 16:] = True
    model = channel_detector()
    for cls, region in ((0, top_left), (1, bottom_right)):
        heat, logits, layer = gradcam(model, x, torch.full((4,), cls))
        assert layer == "0.0" and heat.shape == (4, 32, 32) and logits.shape == (4, 2)
        assert 0 <= heat.min() and heat.max() <= 1
        inside, outside = heat[:, region].mean(), heat[:, ~region].mean()
        assert inside > 0.8 and outside < 0.1, (cls, float(inside), float(outside))
        mass = heat[:, region].sum() / heat.sum()
        assert mass > 0.9


def hpcnn_detector(batch_norm: bool) -> nn.Module:
    """The known-answer detector built by hpcnn's own ``simple_cnn`` (conv [+ BatchNorm] + ReLU(inplace=True) +
    max-pool, pooled linear head), set by hand: map c = input channel c - 0.5, negative where channel c has
    no evidence; logit c = pooled rectified map c - pooled rectified map of the other class."""
    model = simple_cnn(2, 2, channels=(2,), hidden=(), dropout=0.0, batch_norm=batch_norm)
    conv, head = model[0][0], model[1][-1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 1, 1] = torch.eye(2)  # the centre tap of the 3x3 kernel: channel c sees channel c
        (model[0][1].bias if batch_norm else conv.bias).fill_(-0.5)  # BatchNorm in eval: mean 0, var 1
        head.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
        head.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("batch_norm", [True, False], ids=["conv-bn-relu", "conv-relu"])
def test_known_answer_through_hpcnns_own_model_with_its_in_place_relu(batch_norm):
    """The hooked layer's output is rewritten by ReLU(inplace=True), as in every hpcnn model. Class 0's evidence
    is a small square, class 1's a big one: read before the ReLU, the map is -0.5 on the empty background, and
    class 0's negative weight for map 1 times that negative value lit the whole background."""
    model = hpcnn_detector(batch_norm)
    assert any(isinstance(m, nn.ReLU) and m.inplace for m in model.modules())
    x = torch.rand(4, 2, 32, 32) * 0.05
    x[:, 0, :8, :8] += 1.0
    x[:, 1, 16:, 16:] += 1.0
    regions = {0: (slice(0, 8), slice(0, 8)), 1: (slice(16, 32), slice(16, 32))}
    for cls, (rows, cols) in regions.items():
        region = torch.zeros(32, 32, dtype=torch.bool)
        region[rows, cols] = True
        heat, logits, layer = gradcam(model, x, torch.full((4,), cls))
        assert layer == ("0.1" if batch_norm else "0.0") and (logits.argmax(1) == 1).all()  # more evidence
        inside, outside = heat[:, region].mean(), heat[:, ~region].mean()
        assert inside > 0.8 and outside < 0.02, (cls, float(inside), float(outside))
    # the same network with a ReLU that is not in place explains the same way
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    assert torch.allclose(gradcam(model, x, torch.zeros(4, dtype=torch.long))[0], gradcam(
        hpcnn_detector(batch_norm), x, torch.zeros(4, dtype=torch.long))[0], atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_default_target_is_the_predicted_class_and_weights_get_no_grad():
    model = channel_detector()
    x = torch.zeros(1, 2, 8, 8)
    x[:, 1, :4, :4] = 1.0  # only class 1 has evidence: it is predicted, its region lights up
    heat, logits, _ = gradcam(model, x)
    assert logits.argmax(1).item() == 1
    assert heat[0, :4, :4].mean() > 0.8 and heat[0, 4:, :].mean() < 0.1
    assert all(p.grad is None for p in model.parameters())


def _resnet18():
    import torchvision.models as tvm

    return tvm.resnet18(num_classes=5)  # random init: no download


@pytest.mark.parametrize("build, expected", [
    (lambda: simple_cnn(10, 1, channels=(8, 16)), lambda name, m: name == "0.5" and isinstance(m, nn.BatchNorm2d)),
    (lambda: resnet_small(10, 3, width=8, depth=(1, 1)), lambda name, m: name == "0.4" and
     type(m).__name__ == "BasicBlock"),
    (_resnet18, lambda name, m: name == "layer4"),
], ids=["simple_cnn", "resnet_small", "resnet18"])
def test_automatic_target_is_the_last_conv_block(build, expected):
    model = build()
    name, module = target_layer(model)
    assert name == conv_blocks(model)[-1] and expected(name, module), name
    in_channels = next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    heat, _, _ = gradcam(model, torch.randn(2, in_channels, 32, 32))
    assert heat.shape == (2, 32, 32) and heat.max() > 0.99  # a real map, scaled to [0, 1]
    assert target_layer(model, name)[0] == name


def test_a_wrong_layer_name_lists_the_choices():
    model = simple_cnn(10, 1, channels=(8, 16))
    with pytest.raises(HpcnnError, match=r"'nope'.*0\.1, 0\.5"):
        target_layer(model, "nope")
    with pytest.raises(HpcnnError, match="no convolutional layer named '1'"):
        target_layer(model, "1")  # the head: no spatial map
    assert target_layer(model, "0.4")[0] == "0.4"  # any module holding a Conv2d may be named


def test_explain_cli_end_to_end(tmp_path):
    run = tmp_path / "run"
    proc = run_hpcnn("train", *TINY, "train.epochs=1", f"--run-dir={run}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_hpcnn("explain", run, "--n", "12")
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = run / "explain"
    for name in ("gradcam_per_class.png", "gradcam_mistakes.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000, name
    report = json.loads((out / "explain.json").read_text())
    assert report["layer"] == "0.5" and report["split"] == "test" and report["checkpoint"].endswith("best.pt")
    assert len(report["per_class"]) == 12 and len({t["true"] for t in report["per_class"]}) == 10
    assert 0 < len(report["mistakes"]) <= 12
    assert all(t["true"] != t["pred"] for t in report["mistakes"])
    probs = [t["prob"] for t in report["mistakes"]]
    assert probs == sorted(probs, reverse=True)

    bad = run_hpcnn("explain", run, "--layer", "nope")
    assert bad.returncode == 2 and "0.1, 0.5" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_explain_on_a_directory_that_is_not_a_run(tmp_path):
    proc = run_hpcnn("explain", tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a run directory" in lines[0] and "Traceback" not in proc.stderr


def chroma(rgb):
    """max - min over R, G, B per pixel (float RGB in [0, 1]): 0 for greys, ~1 for the heatmap's jet colours."""
    return rgb.max(-1) - rgb.min(-1)


# (model overrides, data overrides, the layer Grad-CAM must pick): every kind of network hpcnn trains, on 1- and
# 3-channel images. The layer is each architecture's last conv block, written out (not read back from the report).
ARCHITECTURES = {
    "simple_cnn-rgb": (["model.name=simple_cnn", "model.channels=[8,16]"], "rgb", "0.5"),
    "resnet_small-grey": (["model.name=resnet_small", "model.width=8", "model.depth=[1,1]"], "grey", "0.4"),
    "resnet_small-rgb": (["model.name=resnet_small", "model.width=8", "model.depth=[1,1]"], "rgb", "0.4"),
    "resnet18-grey": (["model.name=resnet18", "data.image_size=64", "data.channels=3"], "grey", "layer4"),  # 1->3
    "resnet18-rgb": (["model.name=resnet18", "data.image_size=64"], "rgb", "layer4"),  # 64²: layer4 is 2x2, not 1x1
}
DATA = {"rgb": ["data.source=synthetic", "data.image_size=32", "data.n_train=128", "data.n_val=64",
                "data.n_test=64"],
        "grey": ["data.source=digits", "data.image_size=16", "data.channels=1"]}  # 1-channel source images


@pytest.mark.parametrize("case", list(ARCHITECTURES))
def test_explain_runs_of_every_architecture_and_channel_count(case, tmp_path):
    """A one-epoch run of each network on grey or RGB images: both PNG grids are written, big enough, and
    are the images *with* a heatmap over them (coloured pixels the plain images do not have)."""
    import numpy as np
    from PIL import Image

    from hpcnn.config import load_job
    from hpcnn.explain.report import explain_run
    from hpcnn.run import run_job

    model, data, layer = ARCHITECTURES[case]
    cfg = load_job(None, [*DATA[data], *model, "train.epochs=1", "train.batch_size=32", "train.plots=false",
                          "train.tensorboard=false", "train.threads=1"])
    run_job(cfg, run_dir=tmp_path / "run")
    report = explain_run(tmp_path / "run", n=8, device="cpu")
    assert report["layer"] == layer and report["images"] > 0
    assert len(report["per_class"]) == 8
    grid = np.asarray(Image.open(report["per_class_png"]).convert("RGB"), dtype=np.float64) / 255
    assert grid.shape[0] > 200 and grid.shape[1] > 1200  # 8 tiles of ~190 px in a row
    from hpcnn.train.inputs import job_inputs

    splits, _ = job_inputs(cfg, announce=False)
    plain = splits.test.images[[t["index"] for t in report["per_class"]]].float() / 255
    plain = plain.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
    coloured_plain = (chroma(plain) > 0.4).mean()
    coloured_grid = (chroma(grid) > 0.4).mean()
    assert coloured_plain < 0.02 and coloured_grid > 0.1, (coloured_plain, coloured_grid)
    assert Image.open(report["mistakes_png"]).size[0] > 150
