"""The α-β communication model against hand-computed cases (docs/scaling.md)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from hpcnn.errors import ConfigError
from hpcnn.scale import model
from hpcnn.scale.model import Link, Links, StepProfile

from tests.helpers import hpcnn_cmd

INTER = Link(alpha_s=1e-5, beta_bytes_per_s=1e9)
INTRA = Link(alpha_s=1e-6, beta_bytes_per_s=1e10)


def test_ring_allreduce_is_2_n_minus_1_alpha_plus_2_n_minus_1_over_n_s_over_beta():
    # N=4, S=1 MB: 2*3*1e-5 + 2*3/4 * 1e6/1e9 = 6e-5 + 1.5e-3
    assert model.ring_allreduce_s(1e6, 4, INTER) == pytest.approx(1.56e-3, rel=1e-12)
    # N=2: 2*1e-5 + 1*1e6/1e9
    assert model.ring_allreduce_s(1e6, 2, INTER) == pytest.approx(1.02e-3, rel=1e-12)
    for n in (3, 16, 4096):
        assert model.ring_allreduce_s(5e7, n, INTER) == pytest.approx(2 * (n - 1) * 1e-5 + 2 * (n - 1) / n * 5e7 / 1e9)


def test_tree_allreduce_is_2_ceil_log2_n_alpha_plus_s_over_beta():
    assert model.tree_allreduce_s(1e6, 8, INTER) == pytest.approx(6 * (1e-5 + 1e-3))
    assert model.tree_allreduce_s(1e6, 5, INTER) == model.tree_allreduce_s(1e6, 8, INTER)  # ceil(log2 5) = 3
    assert model.tree_allreduce_s(1e6, 2, INTER) == pytest.approx(2 * (1e-5 + 1e-3))


def test_one_rank_costs_nothing():
    links = Links(INTER, INTRA)
    assert model.ring_allreduce_s(1e9, 1, INTER) == 0.0
    assert model.tree_allreduce_s(1e9, 1, INTER) == 0.0
    assert model.allreduce_s(1e9, 1, links, 8) == 0.0
    (one,) = model.predict(StepProfile(0.1, 1e8, 32), links, [1], 8)
    assert (one.step_s, one.exposed_comm_s, one.efficiency, one.speedup) == (pytest.approx(0.1), 0.0, 1.0, 1.0)


def test_two_level_allreduce_adds_the_intra_node_ring_and_the_inter_node_one():
    # 2 nodes x 4 ranks, S=1 MB: intra 2*3*1e-6 + 2*3/4*1e6/1e10 = 1.56e-4; inter ring over 2 nodes = 1.02e-3
    assert model.allreduce_s(1e6, 8, Links(INTER, INTRA), 4) == pytest.approx(1.56e-4 + 1.02e-3)
    # one node: only the intra ring; one rank per node: only the inter ring
    assert model.allreduce_s(1e6, 4, Links(INTER, INTRA), 4) == pytest.approx(model.ring_allreduce_s(1e6, 4, INTRA))
    assert model.allreduce_s(1e6, 8, Links(INTER, INTRA), 1) == pytest.approx(model.ring_allreduce_s(1e6, 8, INTER))
    # without an intra level, a flat ring over all 8 ranks on the inter-node link
    assert model.allreduce_s(1e6, 8, Links(INTER), 4) == pytest.approx(model.ring_allreduce_s(1e6, 8, INTER))
    # tree between nodes: intra ring + 2*ceil(log2 4)*(alpha + S/beta) over 4 nodes
    assert model.allreduce_s(1e6, 16, Links(INTER, INTRA), 4, "tree") == pytest.approx(
        1.56e-4 + 4 * (1e-5 + 1e-3))


def test_buckets_split_the_gradient_like_ddp_fills_them():
    assert model.buckets_of(100, 30) == [30, 30, 30, 10]
    assert model.buckets_of(90, 30) == [30, 30, 30]
    assert model.buckets_of(123, [100, 23]) == [100.0, 23.0]
    assert model.buckets_of(10 * 2**20) == [10 * 2**20]  # under the 25 MiB default cap: one bucket
    with pytest.raises(ConfigError, match="bucket"):
        model.buckets_of(100, [])


def test_overlap_hides_every_bucket_but_the_last_when_communication_is_fast():
    # backward 1 s, two equal buckets ready at 0.5 s and 1.0 s
    assert model.exposed_comm_s([0.3, 0.3], [1, 1], 1.0) == pytest.approx(0.3)   # first hidden, last exposed
    assert model.exposed_comm_s([0.7, 0.7], [1, 1], 1.0) == pytest.approx(0.9)   # first runs to 1.2, last to 1.9
    assert model.exposed_comm_s([0.7, 0.7], [1, 1], 1.0, overlap=False) == pytest.approx(1.4)
    assert model.exposed_comm_s([0.25], [5], 2.0) == pytest.approx(0.25)            # one bucket: nothing overlaps
    # uneven buckets: ready at 0.25 (1/4 of the bytes) and 1.0; 0.25+0.5 = 0.75 < 1.0, so only the last shows
    assert model.exposed_comm_s([0.5, 0.1], [1, 3], 1.0) == pytest.approx(0.1)


def test_predicted_weak_and_strong_scaling_by_hand():
    profile = StepProfile(compute_s=0.09, grad_bytes=1e6, batch_per_rank=32, other_s=0.01, bucket_bytes=[5e5, 5e5],
                          backward_fraction=2 / 3)
    links = Links(INTER)
    bucket = 2 * 3 * 1e-5 + 2 * 3 / 4 * 5e5 / 1e9          # 8.1e-4 s per bucket on 4 ranks
    (weak,) = model.predict(profile, links, [4], 1, "weak")
    # backward 0.06 s: bucket 1 ready at 0.03 (done 0.03081), bucket 2 at 0.06 -> exposed = one bucket
    assert weak.comm_s == pytest.approx(2 * bucket)
    assert weak.exposed_comm_s == pytest.approx(bucket)
    assert weak.step_s == pytest.approx(0.1 + bucket)
    assert weak.images_per_second == pytest.approx(4 * 32 / (0.1 + bucket))
    assert weak.efficiency == pytest.approx(0.1 / (0.1 + bucket))
    (strong,) = model.predict(profile, links, [4], 1, "strong")
    # global batch 32 -> 8 per rank: compute and other shrink 4x, communication does not
    assert strong.batch_per_rank == 8
    assert strong.step_s == pytest.approx(0.025 + bucket)
    assert strong.speedup == pytest.approx((32 / (0.025 + bucket)) / (32 / 0.1))
    assert strong.efficiency == pytest.approx(0.1 / (4 * (0.025 + bucket)))
    assert weak.efficiency > strong.efficiency


def test_efficiency_is_throughput_n_over_n_times_throughput_1():
    assert model.efficiency(300.0, 4, 100.0) == 0.75
    assert model.efficiency(100.0, 1, 100.0) == 1.0


def test_predictions_reach_thousands_of_gpus_and_efficiency_falls():
    profile = StepProfile(compute_s=0.2, grad_bytes=100e6, batch_per_rank=64)
    rows = model.predict(profile, Links(INTER, INTRA), [1, 8, 64, 512, 4096], 8)
    assert [r.nodes for r in rows] == [1, 1, 8, 64, 512]
    effs = [r.efficiency for r in rows]
    assert effs[0] == 1.0 and all(a >= b for a, b in zip(effs, effs[1:])) and 0 < effs[-1] < 1
    assert all(math.isfinite(r.images_per_second) for r in rows)


def test_bad_inputs_are_errors_naming_what():
    with pytest.raises(ConfigError, match="beta"):
        Link(1e-5, 0)
    with pytest.raises(ConfigError, match="rank count"):
        model.ring_allreduce_s(1, 0, INTER)
    with pytest.raises(ConfigError, match="algorithm"):
        model.allreduce_s(1, 2, Links(INTER), 1, "butterfly")
    with pytest.raises(ConfigError, match="inter"):
        model.links_from_dict({"intra": {"alpha_s": 1, "beta_bytes_per_s": 1}})


def test_allreduce_json_gives_the_level_by_its_nodes():
    level, link = model.link_from_allreduce_json({"alpha_s": 2e-5, "beta_bytes_per_s": 3e9, "nodes": ["n1"],
                                                  "world_size": 2}, "x")
    assert (level, link) == ("intra", Link(2e-5, 3e9))
    assert model.link_from_allreduce_json({"alpha_s": 1, "beta_bytes_per_s": 2, "nodes": ["n1", "n2"]}, "x")[0] == \
        "inter"
    with pytest.raises(ConfigError, match="alpha_s"):
        model.link_from_allreduce_json({"rows": []}, "x")


def test_model_cli_prints_the_functions_numbers(tmp_path):
    argv = hpcnn_cmd("scale", "model", "--step-time", "0.09", "--other-time", "0.01", "--grad-bytes", "1e6",
                     "--buckets", "5e5,5e5", "--alpha", "1e-5", "--beta", "1e9", "--gpus", "1,4", "--batch", "32",
                     "--json")
    out = json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout)
    rows = out["predictions"]
    assert [r["ranks"] for r in rows] == [1, 4]
    assert rows[1]["step_s"] == pytest.approx(0.1 + 8.1e-4)
    table = subprocess.run(hpcnn_cmd("scale", "model", "--step-time", "0.1", "--grad-bytes", "1e8", "--alpha", "1e-5",
                                     "--beta", "1e9", "--intra-alpha", "1e-6", "--intra-beta", "1e10",
                                     "--gpus-per-node", "8", "--gpus", "1,8,64,512,4096"),
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert table[1].split()[:3] == ["gpus", "nodes", "step"] and table[-1].split()[:2] == ["4096", "512"]
    bad = subprocess.run(hpcnn_cmd("scale", "model", "--step-time", "0.1", "--grad-bytes", "1e8", "--gpus", "1,2"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "needs link parameters" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_scale_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
            "import hpcnn.scale, hpcnn.scale_cli, hpcnn.scale.payload, hpcnn.scale.plots, hpcnn.scale.runner")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
