"""hpcnn bench and nvJPEG decoding on a real GPU. Skipped cleanly where CUDA is absent (CI, laptops)."""
from __future__ import annotations

import pytest
import torch

from hpcnn.bench.run import bench_job
from hpcnn.config import load_job
from hpcnn.data.gpu_decode import DeviceDecoder, EncodedImageSet, collate_encoded
from hpcnn.data.imagesets import FileImageSet
from hpcnn.data.synthetic import write_image_folder

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")]


def test_gpu_decoding_matches_pil_and_lands_on_the_device(tmp_path):
    write_image_folder(tmp_path, 32, size=72, seed=2, fmt="jpg")
    paths = sorted(str(p) for p in tmp_path.rglob("*.jpg"))
    files = FileImageSet(paths, [0] * len(paths), size=64, channels=3, crop=0.875)
    items, labels = collate_encoded([EncodedImageSet(files)[i] for i in range(len(paths))])
    x, y = DeviceDecoder(files, torch.device("cuda"))(items, labels)
    assert x.is_cuda and y.is_cuda and tuple(x.shape) == (len(paths), 3, 64, 64)
    pil = torch.stack([files[i][0] for i in range(len(paths))])
    assert (x.cpu().float() - pil.float()).abs().mean() < 3.0


def test_bench_on_gpu_reports_telemetry_and_gpu_decode(tmp_path):
    write_image_folder(tmp_path / "img", 160, size=64, seed=1, fmt="jpg")
    cfg = load_job(None, ["model.name=resnet18", "data.source=folder", f"data.root={tmp_path / 'img'}",
                          "train.batch_size=32", "train.amp=bf16", "train.channels_last=true", "data.num_workers=2"])
    r = bench_job(cfg, tmp_path / "b.json", data="real", warmup=2, steps=4, windows=2)
    assert r["decode"] == "gpu" and r["precision"] == "bf16" and r["device_type"] == "cuda"
    assert r["peak_memory_kind"] == "cuda_max_allocated" and r["peak_memory_mib"] > 0
    assert r["gpu"] is not None and r["gpu"]["per_rank"][0]["samples"] >= 2
    st = r["step_time_s"]
    # the four intervals add up by construction; the checks that can fail are the next two and the test below
    assert st["split_data"] + st["compute"] + st["comm"] + st["optimizer"] == pytest.approx(st["split_total"])
    assert st["comm"] == 0.0 and st["compute"] > 0  # one rank sends nothing


def test_bench_on_gpu_compute_grows_with_the_batch(tmp_path):
    """Forward+backward of 32x the images takes longer on the GPU too (the split times device work, synchronised).

    224² ResNet-18: batch 8 is bound by kernel launches, batch 256 by arithmetic (several times longer).
    """
    compute = {}
    for batch in (8, 256):
        cfg = load_job(None, ["model.name=resnet18", "data.image_size=224", f"train.batch_size={batch}",
                              "train.amp=bf16"])
        r = bench_job(cfg, tmp_path / f"b{batch}.json", data="synthetic", warmup=2, steps=3, windows=1)
        assert r["device_type"] == "cuda" and r["step_time_s"]["comm"] == 0.0
        compute[batch] = r["step_time_s"]["compute"]
    assert compute[256] > 2 * compute[8], compute


def test_augmentation_on_the_gpu_equals_the_cpu_one():
    """The parameters travel in one pinned asynchronous copy (no stream sync per tensor): same values."""
    from types import SimpleNamespace

    from hpcnn.data.augment import BatchAugment

    cfg = SimpleNamespace(hflip=True, vflip=True, rotation=20.0, random_resized_crop=0.6, color_jitter=0.3)
    aug = BatchAugment(cfg, seed=5)
    x = torch.rand(16, 3, 24, 24)
    cpu = aug(x, epoch=1, step=7, offset=16, global_batch=32)
    gpu = aug(x.cuda(), epoch=1, step=7, offset=16, global_batch=32)
    assert torch.allclose(gpu.cpu(), cpu, atol=1e-4)
