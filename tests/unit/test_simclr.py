"""SimCLR's parts: NT-Xent against a direct implementation, the gradient-correct all-gather (ranks
simulated by threads), views that do not depend on how the batch is split, the backbone's checkpoint."""
from __future__ import annotations

import copy
import threading

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hpcnn.config import load_job
from hpcnn.dist import gather
from hpcnn.models import create_model
from hpcnn.ssl.probe import LinearProbe
from hpcnn.ssl.simclr import LARS, Backbone, SimCLR, TwoViews, ViewSettings, gaussian_blur, nt_xent


def reference_nt_xent(z1, z2, temperature):
    """SimCLR's loss written out anchor by anchor: -log(exp(s_ij/t) / sum_{k != i} exp(s_ik/t))."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n, b = len(z), len(z1)
    losses = []
    for i in range(n):
        j = (i + b) % n
        others = torch.stack([z[i] @ z[k] / temperature for k in range(n) if k != i])
        losses.append(torch.logsumexp(others, 0) - z[i] @ z[j] / temperature)
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_equals_the_definition_value_and_gradient(temperature):
    torch.manual_seed(0)
    z1 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    ours = nt_xent(z1, z2, temperature)
    ref = reference_nt_xent(z1, z2, temperature)
    assert torch.allclose(ours, ref, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (z1, z2))
    g_ref = torch.autograd.grad(ref, (z1, z2))
    assert all(torch.allclose(a, b, atol=1e-12) for a, b in zip(g_ours, g_ref))


def test_nt_xent_is_small_for_matching_views_and_large_for_unrelated_ones():
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    assert nt_xent(z, z + 0.01 * torch.randn_like(z), 0.1) < 0.05
    assert nt_xent(z, torch.randn_like(z), 0.1) > 2.0


# ----------------------------------------------------------------------------------- simulated ranks
class ThreadComm:
    """The Comm of one simulated rank: ranks are threads that meet at a barrier."""

    backend = "threads"

    def __init__(self, group, rank):
        self.group, self.rank, self.world_size = group, rank, group["n"]


class ThreadCollectives:
    """Stands in for ``gather._Collectives``: all-gather and all-reduce between the threads."""

    def __init__(self, comm):
        self.comm, self.rank, self.world_size = comm, comm.rank, comm.world_size

    def _exchange(self, x):
        group = self.comm.group
        group["slots"][self.rank] = x.detach().clone()
        group["barrier"].wait()
        out = list(group["slots"])
        group["barrier"].wait()
        return out

    def gather(self, x):
        return torch.cat(self._exchange(x))

    def sum(self, x):
        return torch.stack(self._exchange(x)).sum(0)


def run_ranks(n, work):
    """``work(comm)`` on n threads, one per simulated rank; their results in rank order."""
    group = {"n": n, "barrier": threading.Barrier(n, timeout=30), "slots": [None] * n}
    results, errors = [None] * n, []

    def main(rank):
        try:
            results[rank] = work(ThreadComm(group, rank))
        except BaseException as err:  # noqa: BLE001 - re-raised below
            errors.append(err)
            group["barrier"].abort()

    threads = [threading.Thread(target=main, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


@pytest.fixture
def threaded(monkeypatch):
    monkeypatch.setattr(gather, "_Collectives", ThreadCollectives)


def test_gather_sends_each_rank_the_sum_of_all_gradients_of_its_slice(threaded):
    x = torch.arange(12, dtype=torch.float64).view(6, 2)
    weights = [torch.randn(6, 2, dtype=torch.float64) for _ in range(3)]

    def work(comm):
        mine = x[2 * comm.rank:2 * comm.rank + 2].clone().requires_grad_(True)
        everything = gather.all_gather_grad(mine, comm)
        (everything * weights[comm.rank]).sum().backward()
        return everything.detach(), mine.grad

    results = run_ranks(3, work)
    total = sum(weights)
    for rank, (everything, grad) in enumerate(results):
        assert torch.equal(everything, x)
        assert torch.allclose(grad, total[2 * rank:2 * rank + 2])


def test_single_process_gather_is_the_tensor_itself():
    from hpcnn.dist import SingleComm

    x = torch.randn(3, 2)
    assert gather.all_gather_grad(x, SingleComm()) is x


@pytest.mark.parametrize("ranks", [2, 4])
def test_n_ranks_with_b_over_n_equal_one_rank_with_b(threaded, ranks):
    """Loss and (DDP-averaged) gradients of a model under NT-Xent: as one process with the whole batch."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 8)).double()
    x1, x2 = torch.randn(8, 10, dtype=torch.float64), torch.randn(8, 10, dtype=torch.float64)
    loss = nt_xent(model(x1), model(x2), 0.3)
    loss.backward()
    expected = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    b = 8 // ranks

    def work(comm):
        replica = copy.deepcopy(model)
        part = slice(comm.rank * b, (comm.rank + 1) * b)
        local = nt_xent(replica(x1[part]), replica(x2[part]), 0.3, comm)
        local.backward()
        return local.item(), [p.grad for p in replica.parameters()]

    results = run_ranks(ranks, work)
    assert abs(sum(r[0] for r in results) / ranks - loss.item()) < 1e-12
    for i, want in enumerate(expected):
        averaged = sum(r[1][i] for r in results) / ranks  # what DDP's allreduce does
        assert torch.allclose(averaged, want, atol=1e-12)


# ----------------------------------------------------------------------------------- views
def test_views_do_not_depend_on_how_the_global_batch_is_split():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 16, 16)
    views = TwoViews(ViewSettings(rotation=180, vflip=True), seed=3)
    one = views(x, epoch=2, step=5, offset=0, global_batch=8)
    parts = [views(x[r * 4:(r + 1) * 4], 2, 5, r * 4, 8) for r in range(2)]
    for v in range(2):
        assert torch.allclose(one[v], torch.cat([p[v] for p in parts]), atol=1e-6)
    again = views(x, 2, 5, 0, 8)
    assert torch.equal(one[0], again[0]) and torch.equal(one[1], again[1])
    assert not torch.allclose(one[0], one[1])                       # two different augmentations
    assert not torch.allclose(views(x, 2, 6, 0, 8)[0], one[0])      # a new step, new views
    assert one[0].shape == x.shape and 0 <= one[0].min() and one[0].max() <= 1


def test_blur_with_sigma_zero_is_the_identity_and_blurs_otherwise():
    x = torch.rand(2, 3, 12, 12)
    assert torch.allclose(gaussian_blur(x, torch.zeros(2), 1.0), x, atol=1e-6)
    blurred = gaussian_blur(x, torch.tensor([0.0, 1.0]), 1.0)
    assert torch.allclose(blurred[0], x[0], atol=1e-6) and blurred[1].std() < x[1].std()


def test_view_settings_take_the_domain_invariances_from_data_augment():
    cfg = load_job(None, ["data.augment.rotation=180", "data.augment.vflip=true"])
    s = ViewSettings.from_config(cfg)
    assert s.rotation == 180 and s.vflip and s.hflip


# ----------------------------------------------------------------------------------- model
@pytest.mark.parametrize("overrides", [["model.name=simple_cnn", "model.channels=[8,16]"],
                                       ["model.name=resnet_small", "model.width=8", "model.depth=[1,1]"],
                                       ["model.name=mlp", "model.hidden=[32]"]])
def test_backbone_saves_the_whole_classifier_with_its_original_head(overrides):
    cfg = load_job(None, overrides)
    torch.manual_seed(0)
    classifier = create_model(cfg.model, 5, 3, 16)
    original = {k: v.clone() for k, v in classifier.state_dict().items()}
    backbone = Backbone(classifier, 3, 16)
    model = SimCLR(backbone, 32, 16)
    assert model(torch.rand(4, 3, 16, 16)).shape == (4, 16)
    assert backbone(torch.rand(4, 3, 16, 16)).shape == (4, backbone.dim)
    with torch.no_grad():
        for p in backbone.parameters():
            p.add_(1.0)
    state = backbone.classifier_state_dict()
    assert set(state) == set(original)
    fresh = create_model(cfg.model, 5, 3, 16)
    fresh.load_state_dict(state)  # strict: every tensor of the classifier is there
    head = [k for k in original if k not in backbone.net.state_dict()]
    assert head and all(torch.equal(state[k], original[k]) for k in head)         # the head as initialised
    assert any(not torch.equal(state[k], original[k]) for k in state if k not in head)  # the trained backbone
    other = create_model(cfg.model, 9, 3, 16).state_dict()  # another number of classes: only the head differs
    assert {k for k in state if other[k].shape != state[k].shape} <= set(head)


def test_lars_scales_weight_updates_by_the_trust_ratio_and_leaves_biases_alone():
    w = nn.Parameter(torch.full((2, 2), 3.0))
    b = nn.Parameter(torch.zeros(2))
    opt = LARS([w, b], lr=0.1, momentum=0.9, eta=0.01)
    w.grad, b.grad = torch.full((2, 2), 100.0), torch.ones(2)
    opt.step()
    assert torch.allclose(w.detach(), torch.full((2, 2), 3.0 - 0.1 * 0.01 * 6.0 / 200.0 * 100.0))
    assert torch.allclose(b.detach(), torch.full((2,), -0.1))


def test_linear_probe_separates_separable_features():
    torch.manual_seed(0)
    labels = torch.arange(300) % 3
    features = torch.randn(300, 8) * 0.3 + F.one_hot(labels, 8).float() * 3
    probe = LinearProbe(features, labels, 3)
    assert (probe.logits(features).argmax(1) == labels).float().mean() == 1.0
