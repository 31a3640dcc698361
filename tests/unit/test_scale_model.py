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


# S = 1 MB on INTER: one message costs alpha + S/beta = 1e-5 + 1e-3 = 1.01e-3 s

def test_recursive_doubling_is_log2_n_messages_of_the_whole_vector():
    assert model.recursive_doubling_allreduce_s(1e6, 8, INTER) == pytest.approx(3 * 1.01e-3, rel=1e-12)
    assert model.recursive_doubling_allreduce_s(1e6, 2, INTER) == pytest.approx(1.01e-3, rel=1e-12)
    # N = 5 is not a power of two: recursive doubling on p' = 4 (2 steps) + fold in and out (2 messages)
    assert model.recursive_doubling_allreduce_s(1e6, 5, INTER) == pytest.approx(4 * 1.01e-3, rel=1e-12)


def test_rabenseifner_is_2_log2_n_alpha_plus_ring_bandwidth():
    # N = 8: 2*3*1e-5 + 2*7/8 * 1e6/1e9 = 6e-5 + 1.75e-3
    assert model.rabenseifner_allreduce_s(1e6, 8, INTER) == pytest.approx(1.81e-3, rel=1e-12)
    # N = 6: on p' = 4, 2*2*1e-5 + 2*3/4*1e-3 = 1.54e-3, plus the fold 2*1.01e-3
    assert model.rabenseifner_allreduce_s(1e6, 6, INTER) == pytest.approx(1.54e-3 + 2.02e-3, rel=1e-12)


def test_binomial_reduce_then_broadcast_is_2_ceil_log2_n_messages():
    assert model.binomial_allreduce_s(1e6, 8, INTER) == pytest.approx(6 * 1.01e-3, rel=1e-12)
    assert model.binomial_allreduce_s(1e6, 5, INTER) == pytest.approx(6 * 1.01e-3, rel=1e-12)  # ceil(log2 5) = 3
    assert model.binomial_allreduce_s(1e6, 2, INTER) == pytest.approx(2 * 1.01e-3, rel=1e-12)
    assert model.tree_allreduce_s is model.binomial_allreduce_s  # the old name


def test_tree_is_the_old_name_of_binomial_and_unknown_names_list_the_valid_ones():
    assert model.algorithm_name("tree") == "binomial"
    assert model.allreduce_s(1e6, 8, Links(INTER), 1, "tree") == model.allreduce_s(1e6, 8, Links(INTER), 1, "binomial")
    with pytest.raises(ConfigError, match="ring, recursive_doubling, rabenseifner, binomial, auto"):
        model.algorithm_name("latency_optimal")


def test_auto_takes_the_fastest_variant_per_message_size():
    links = Links(INTER)
    # 1 KB on 8 ranks: recursive doubling 3*(1e-5 + 1e-6) = 3.3e-5 beats Rabenseifner 6e-5 + 1.75e-6,
    # binomial 6*1.1e-5 and the ring 14e-5 + 1.75e-6
    assert model.allreduce_choice(1e3, 8, links, 1, "auto") == (pytest.approx(3.3e-5), "recursive_doubling")
    # 100 MB on 8 ranks: Rabenseifner 6e-5 + 0.175 (same bandwidth term as the ring, fewer latencies)
    assert model.allreduce_choice(1e8, 8, links, 1, "auto") == (pytest.approx(0.17506), "rabenseifner")
    # 100 MB on 6 ranks: the ring 10e-5 + 2*5/6*0.1; Rabenseifner pays the fold of 2 whole messages
    assert model.allreduce_choice(1e8, 6, links, 1, "auto") == (pytest.approx(1e-4 + 1 / 6), "ring")
    # one node with an intra level: no inter-node allreduce, nothing chosen
    assert model.allreduce_choice(1e6, 4, Links(INTER, INTRA), 4, "auto")[1] is None
    (row,) = model.predict(StepProfile(0.1, 1e8 + 1e3, 32, bucket_bytes=[1e3, 1e8]), links, [8], 1, "weak", "auto")
    assert row.algorithms == {"recursive_doubling": 1, "rabenseifner": 1}
    assert row.comm_s == pytest.approx(3.3e-5 + 0.17506)
    assert row.comm_by_algorithm_s["ring"] == pytest.approx(1.4175e-4 + 0.17514)
    assert set(row.comm_by_algorithm_s) == set(model.VARIANTS)


def test_one_rank_costs_nothing():
    links = Links(INTER, INTRA)
    assert model.ring_allreduce_s(1e9, 1, INTER) == 0.0
    for variant in model.VARIANTS:
        assert model.allreduce_s(1e9, 1, Links(INTER), 1, variant) == 0.0
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
    # binomial between nodes: intra ring + 2*ceil(log2 4)*(alpha + S/beta) over 4 nodes
    assert model.allreduce_s(1e6, 16, Links(INTER, INTRA), 4, "binomial") == pytest.approx(
        1.56e-4 + 4 * (1e-5 + 1e-3))
    # recursive doubling between 4 nodes: intra ring + 2 * 1.01e-3
    assert model.allreduce_choice(1e6, 16, Links(INTER, INTRA), 4, "recursive_doubling") == (
        pytest.approx(1.56e-4 + 2.02e-3), "recursive_doubling")


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
    profile = StepProfile(compute_s=0.09, grad_bytes=1e6, batch_per_rank=32, data_s=0.004, optimizer_s=0.006,
                          bucket_bytes=[5e5, 5e5], backward_fraction=2 / 3)
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
    # global batch 32 -> 8 per rank: compute (0.09) and data wait (0.004) shrink 4x; the optimizer step (0.006)
    # runs whole on every rank, and communication does not shrink. Backward 0.015 s: buckets ready at 0.0075
    # (done 0.00831) and 0.015 -> exposed = one bucket
    assert strong.batch_per_rank == 8
    assert (strong.compute_s, strong.data_s, strong.optimizer_s) == (pytest.approx(0.0225), pytest.approx(0.001),
                                                                     0.006)
    assert strong.exposed_comm_s == pytest.approx(bucket)
    assert strong.step_s == pytest.approx(0.0225 + 0.001 + 0.006 + bucket)
    assert strong.speedup == pytest.approx((32 / (0.0295 + bucket)) / (32 / 0.1))
    assert strong.efficiency == pytest.approx(0.1 / (4 * (0.0295 + bucket)))
    assert weak.efficiency > strong.efficiency


def test_strong_scaling_never_shrinks_the_optimizer_step():
    # no communication cost to speak of: the optimizer alone bounds the speed-up (Amdahl)
    profile = StepProfile(compute_s=0.9, grad_bytes=4, batch_per_rank=1024, optimizer_s=0.1)
    fast = Links(Link(0.0, 1e30))
    rows = model.predict(profile, fast, [1, 8, 1024], 1, "strong")
    assert [r.step_s for r in rows] == [pytest.approx(1.0), pytest.approx(0.9 / 8 + 0.1),
                                        pytest.approx(0.9 / 1024 + 0.1)]
    assert rows[-1].speedup == pytest.approx(1.0 / (0.9 / 1024 + 0.1)) and rows[-1].speedup < 10


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
    def model_json(*args):
        argv = hpcnn_cmd("scale", "model", "--step-time", "0.09", "--grad-bytes", "1e6", "--buckets", "5e5,5e5",
                         "--alpha", "1e-5", "--beta", "1e9", "--gpus", "1,4", "--batch", "32", "--json", *args)
        return json.loads(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout)

    bucket = 8.1e-4
    rows = model_json("--other-time", "0.01")["predictions"]  # the old name of --optimizer-time
    assert [r["ranks"] for r in rows] == [1, 4]
    assert rows[1]["step_s"] == pytest.approx(0.1 + bucket)
    strong = model_json("--data-time", "0.004", "--optimizer-time", "0.006", "--mode", "strong")["predictions"]
    assert strong[1]["step_s"] == pytest.approx(0.0225 + 0.001 + 0.006 + bucket)
    tree = model_json("--algorithm", "tree")
    assert tree["algorithm"] == "binomial" and tree["predictions"][1]["comm_s"] == pytest.approx(
        2 * 2 * 2 * (1e-5 + 5e5 / 1e9))
    table = subprocess.run(hpcnn_cmd("scale", "model", "--step-time", "0.1", "--grad-bytes", "1e8", "--alpha", "1e-5",
                                     "--beta", "1e9", "--intra-alpha", "1e-6", "--intra-beta", "1e10",
                                     "--gpus-per-node", "8", "--gpus", "1,8,64,512,4096", "--algorithm", "auto"),
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert table[0].startswith("auto allreduce")
    assert table[1].split()[:3] == ["gpus", "nodes", "step"] and table[-1].split()[:2] == ["4096", "512"]
    assert table[-1].split()[-2:] == ["rabenseifner", "x4"] and table[3].split()[-1] == "-"  # 1 node: intra only
    bad = subprocess.run(hpcnn_cmd("scale", "model", "--step-time", "0.1", "--grad-bytes", "1e8", "--gpus", "1,2"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "needs link parameters" in bad.stderr and len(bad.stderr.splitlines()) == 1
    bad = subprocess.run(hpcnn_cmd("scale", "model", "--step-time", "0.1", "--grad-bytes", "1e8", "--gpus", "1,2",
                                   "--alpha", "1e-5", "--beta", "1e9", "--algorithm", "latency_optimal"),
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--algorithm" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_scale_imports_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
            "import hpcnn.scale, hpcnn.cli.scale, hpcnn.scale.payload, hpcnn.scale.plots, hpcnn.scale.runner")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
