"""Per-image GPU memory from bench results at two or more batch sizes; numbers worked out by hand."""
from __future__ import annotations

import json

import pytest

from hpcnn.cli import main
from hpcnn.errors import HpcnnError
from hpcnn.monitor.memory import bench_points, fit_memory, memory_advice


def bench(batch: int, peak: float, accumulate: int = 1, total: float | None = 80_000.0, **other) -> dict:
    """The keys of an `hpcnn bench` result that the fit reads."""
    gpu = {"per_rank": [{"per_gpu": [{"mem_total_mib": total}]}]} if total else None
    return {"model": "resnet50", "image_size": 224, "precision": "bf16", "channels_last": True, "compile": False,
            "device": "NVIDIA H100", "peak_memory_kind": "cuda_max_allocated", "device_type": "cuda",
            "batch_size_per_rank": batch, "accumulate": accumulate, "peak_memory_mib": peak, "gpu": gpu, **other}


def test_two_batches_give_fixed_and_per_image_memory():
    # 10,000 MiB at 64 and 18,000 at 128: 8,000 / 64 = 125 MiB per image, fixed 10,000 - 64 x 125 = 2,000
    fit = fit_memory([(64, 10_000.0), (128, 18_000.0)])
    assert (fit.fixed_mib, fit.per_image_mib) == pytest.approx((2_000.0, 125.0))
    # 85% of 80,000 = 68,000: (68,000 - 2,000) / 125 = 528 images
    assert fit.batch_that_fits(80_000, 0.85) == 528
    # the one-point growth factor is a lower bound: 128 x 68,000 / 18,000 = 483.6 < 528
    assert 128 * 0.85 * 80_000 / 18_000 < fit.batch_that_fits(80_000, 0.85)


def test_three_batches_are_fitted_by_least_squares():
    # mean batch 224/3, mean peak 34,000/3; Sxy = 594,133.3, Sxx = 4,778.7: slope 13,925/112 = 124.33 MiB/image,
    # fixed 34,000/3 - 124.33 x 224/3 = 2,050; (68,000 - 2,050) / 124.33 = 530.4 -> 530
    fit = fit_memory([(32, 6_100.0), (64, 9_900.0), (128, 18_000.0)])
    assert fit.per_image_mib == pytest.approx(13_925 / 112) and fit.fixed_mib == pytest.approx(2_050.0)
    assert fit.batch_that_fits(80_000, 0.85) == 530 and fit.batches == [32, 64, 128]


def test_a_fit_needs_two_batch_sizes_and_growing_memory():
    with pytest.raises(HpcnnError, match="two different batch sizes"):
        fit_memory([(64, 10_000.0), (64, 10_100.0)])
    with pytest.raises(HpcnnError, match="did not grow"):
        fit_memory([(64, 10_000.0), (128, 9_000.0)])


def test_bench_points_count_images_per_forward_pass_and_refuse_mixed_jobs():
    points, capacity = bench_points([bench(128, 10_000.0, accumulate=2), bench(256, 18_000.0, accumulate=2)])
    assert points == [(64, 10_000.0), (128, 18_000.0)] and capacity == 80_000.0
    with pytest.raises(HpcnnError, match="differ in precision"):
        bench_points([bench(64, 1.0), bench(128, 2.0, precision="fp32")])
    with pytest.raises(HpcnnError, match="not an `hpcnn bench` result"):
        bench_points([bench(64, 1.0), {"world_size": 2}])
    with pytest.raises(HpcnnError, match="not measured on a GPU"):
        bench_points([bench(64, 1.0), bench(128, 2.0, device_type="cpu")])


def test_memory_command_prints_the_batch_that_fits(tmp_path, capsys):
    files = []
    for batch, peak in ((64, 10_000.0), (128, 18_000.0)):
        files.append(tmp_path / f"b{batch}.json")
        files[-1].write_text(json.dumps(bench(batch, peak)))
    assert main(["memory", *map(str, files), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["fixed_mib"], result["per_image_mib"], result["batch_that_fits"]) == (2000.0, 125.0, 528)
    assert main(["memory", *map(str, files), "--target", "0.5"]) == 0
    out = capsys.readouterr().out  # 0.5 x 80,000 = 40,000: (40,000 - 2,000) / 125 = 304
    assert "2,000 MiB + 125.0 MiB per image" in out and "about 304 images per GPU" in out
    bare = [tmp_path / "a.json", tmp_path / "b.json"]  # no NVML samples: the capacity must be given
    bare[0].write_text(json.dumps(bench(64, 10_000.0, total=None)))
    bare[1].write_text(json.dumps(bench(256, 34_000.0, total=None)))
    with pytest.raises(HpcnnError, match="--capacity-mib"):
        memory_advice(bare)
    assert memory_advice(bare, capacity_mib=40_000)["batch_that_fits"] == 256  # 0.85 x 40,000 = 34,000
