"""hpcnn bench pieces that need no process group: sizes, the α-β fit, data.decode, the device decoder (CPU)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from hpcnn.bench.allreduce import fit_alpha_beta
from hpcnn.bench.timing import human_size, size_range, spread
from hpcnn.config import load_job
from hpcnn.data.gpu_decode import DeviceDecoder, EncodedImageSet, collate_encoded, resolve_decode
from hpcnn.data.imagesets import FileImageSet
from hpcnn.data.synthetic import write_image_folder
from hpcnn.errors import ConfigError


def test_size_ranges_double_like_nccl_tests():
    assert size_range("1K..8K") == [1024, 2048, 4096, 8192]
    assert size_range("64,1M") == [64, 2**20]
    assert [human_size(s) for s in size_range("512K..2M")] == ["512K", "1M", "2M"]
    with pytest.raises(ValueError):
        size_range("8K..1K")
    with pytest.raises(ValueError):
        size_range("lots")


def test_spread_is_median_min_max():
    assert spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0}


@pytest.mark.parametrize("n", [2, 4, 16])
def test_alpha_beta_fit_recovers_the_ring_model(n):
    alpha, beta = 5e-6, 20e9  # 5 us per message, 20 GB/s per link
    sizes = [2**k for k in range(10, 29)]
    times = [2 * (n - 1) * alpha + 2 * (n - 1) / n * s / beta for s in sizes]
    a, b = fit_alpha_beta(sizes, times, n)
    assert a == pytest.approx(alpha, rel=1e-6)
    assert b == pytest.approx(beta, rel=1e-6)


def test_alpha_beta_fit_stays_positive_on_noisy_latency():
    sizes = [1024, 2048, 4096, 8192]
    times = [1e-3, 0.5e-3, 0.8e-3, 1.1e-3]  # latency-bound noise: the line may cross zero
    a, b = fit_alpha_beta(sizes, times, 2)
    assert a > 0 and b > 0
    with pytest.raises(ValueError):
        fit_alpha_beta(sizes, times, 1)


def test_alpha_beta_fit_without_a_bandwidth_term_takes_beta_from_the_largest_message():
    """The worked example of issue 18: latency-bound times falling with size (a negative slope)."""
    sizes = [1024, 2048, 4096, 8192]
    times = [1.0e-3, 0.9e-3, 0.9e-3, 0.8e-3]
    alpha, beta = fit_alpha_beta(sizes, times, 2)
    # b = 0.8 ms / 8192 B; N = 2: beta = 2(N-1)/N / b = 8192 / 0.8e-3 = 10.24 MB/s (the smallest message gave 1.0)
    assert beta == pytest.approx(10.24e6, rel=1e-12)
    # the intercept for that slope, weights 1/t^2: mean size 4254.9 B, mean time 0.88882 ms,
    # a = 0.88882 - 0.8/8192 * 4254.9 = 0.47330 ms, alpha = a / (2(N-1)) = 0.23665 ms
    assert alpha == pytest.approx(0.23665e-3, rel=1e-4)
    # one size measured twice: no slope at all, the same fallback (b = 1 ms / 4096 B; a = 1.2 ms - 1 ms)
    assert fit_alpha_beta([4096, 4096], [1e-3, 2e-3], 2) == (pytest.approx(1e-4), pytest.approx(4.096e6))


def test_alpha_beta_fit_with_a_negative_intercept_takes_the_smallest_messages_time():
    # exactly t = -0.3 ms + 0.4 ms per KiB: the slope holds (beta = 1024 B / 0.4 ms on 2 ranks), the
    # intercept does not; the latency term is the 1 KiB message's 0.1 ms, alpha = 0.1 ms / (2(N-1))
    sizes = [8192, 1024, 4096, 2048]  # any order
    times = [2.9e-3, 0.1e-3, 1.3e-3, 0.5e-3]
    assert fit_alpha_beta(sizes, times, 2) == (pytest.approx(0.05e-3), pytest.approx(2.56e6))
    # on 4 ranks the same line: alpha = a / 6, beta = (3/2) / b
    assert fit_alpha_beta(sizes, times, 4) == (pytest.approx(0.1e-3 / 6), pytest.approx(1.5 * 2.56e6))
    # noisy: the 2 KiB message came out faster than the 1 KiB one; the fitted line (slope 1.6672e-7 s/B)
    # crosses zero at -0.042 ms, and the latency term is the smallest message's 0.3 ms, not the fastest's 0.2 ms
    alpha, beta = fit_alpha_beta([1024, 2048, 4096, 8192], [0.3e-3, 0.2e-3, 1.3e-3, 2.9e-3], 2)
    assert alpha == pytest.approx(0.15e-3) and beta == pytest.approx(1 / 1.6672e-7, rel=1e-4)


def test_decode_modes_resolve_and_fail_early():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    data = load_job(None, ["data.source=folder", "data.root=/nowhere"]).data
    assert data.decode == "auto"
    assert resolve_decode(data, cpu) == "cpu"  # auto without a GPU: the PIL path
    assert resolve_decode(dataclasses.replace(data, decode="cpu"), cuda) == "cpu"
    assert resolve_decode(data, cuda, ["a/x.jpg", "b/y.JPEG"]) == "gpu"
    assert resolve_decode(data, cuda, ["a/x.jpg", "b/y.png"]) == "cpu"  # not all JPEG: stay on the CPU
    with pytest.raises(ConfigError, match="no GPU visible") as err:
        resolve_decode(dataclasses.replace(data, decode="gpu"), cpu)
    assert err.value.where == "data.decode"
    synthetic = load_job(None, ["data.decode=gpu"]).data
    with pytest.raises(ConfigError, match="data.source is synthetic"):
        resolve_decode(synthetic, cuda)
    assert resolve_decode(dataclasses.replace(synthetic, decode="auto"), cuda) == "cpu"


def test_decode_is_checked_at_load():
    with pytest.raises(ConfigError, match="data.decode"):
        load_job(None, ["data.decode=nvjpeg"])


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp("jpegs")
    write_image_folder(root, 24, size=40, seed=3, fmt="jpg")
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    return paths


@pytest.mark.parametrize("crop", [None, 0.875])
def test_device_decoder_matches_the_pil_path(jpegs, crop):
    """The batched decoder (run here on the CPU) gives what the workers' PIL path gives, within a few levels."""
    files = FileImageSet(jpegs, [i % 3 for i in range(len(jpegs))], size=32, channels=3, crop=crop)
    items, labels = collate_encoded([EncodedImageSet(files)[i] for i in range(len(files))])
    assert all(it[0].ndim == 1 for it in items)  # workers ship bytes, not pixels
    x, y = DeviceDecoder(files, torch.device("cpu"))(items, labels)
    assert x.dtype == torch.uint8 and tuple(x.shape) == (len(jpegs), 3, 32, 32)
    assert torch.equal(y, files.labels)
    pil = torch.stack([files[i][0] for i in range(len(files))])
    diff = (x.float() - pil.float()).abs()
    assert diff.mean() < 3.0, diff.mean()


def test_device_decoder_keeps_pil_decoded_images_as_they_are(jpegs, tmp_path):
    """A worker's PIL decode (a non-JPEG) and PIL's retry of a file nvJPEG refused are already sized and
    cropped: the decoder passes them on unchanged (it used to crop them a second time)."""
    from PIL import Image

    png = tmp_path / "x.png"
    Image.open(jpegs[2]).save(png)
    refused = tmp_path / "refused.jpg"  # PIL reads it (a PNG under a JPEG name), nvJPEG does not
    Image.open(jpegs[3]).save(refused, format="PNG")
    files = FileImageSet([jpegs[0], str(png), str(refused)], [0, 1, 2], size=32, channels=3, crop=0.875)
    items, labels = collate_encoded([EncodedImageSet(files)[i] for i in range(3)])
    assert [it[0].ndim for it in items] == [1, 3, 1]
    x, y = DeviceDecoder(files, torch.device("cpu"))(items, labels)
    assert y.tolist() == [0, 1, 2] and tuple(x.shape) == (3, 3, 32, 32)
    assert torch.equal(x[1], files[1][0]) and torch.equal(x[2], files[2][0])


def test_device_decoder_drops_a_corrupt_file_and_keeps_labels_aligned(jpegs, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    paths = [jpegs[0], str(bad), jpegs[1]]
    files = FileImageSet(paths, [0, 1, 2], size=32, channels=1)
    items, labels = collate_encoded([EncodedImageSet(files)[i] for i in range(3)])
    x, y = DeviceDecoder(files, torch.device("cpu"))(items, labels)
    assert tuple(x.shape) == (2, 1, 32, 32) and y.tolist() == [0, 2]
    strict = FileImageSet(paths, [0, 1, 2], size=32, channels=1, on_corrupt="fail")
    with pytest.raises(Exception, match="bad.jpg|corrupt|unreadable"):
        DeviceDecoder(strict, torch.device("cpu"))(*collate_encoded([EncodedImageSet(strict)[i] for i in range(3)]))


def test_preflight_refuses_gpu_decoding_without_gpus():
    from hpcnn.errors import ResourceError
    from hpcnn.slurm.site.preflight import check_launch
    from hpcnn.slurm.site.resources import Resources

    cfg = load_job(None, ["data.decode=gpu"])
    cpu_job = Resources(nodes=1, gpus_per_node=0, tasks_per_node=1, cpus_per_task=2, mem_gb=None, time_min=10,
                        job_name="x")
    with pytest.raises(ResourceError, match="data.decode is gpu"):
        check_launch(cfg, cpu_job)
    check_launch(cfg, dataclasses.replace(cpu_job, gpus_per_node=1))  # fine with a GPU


def test_bench_builds_the_step_of_the_configs_objective():
    """A SimCLR config is timed with SimCLR's model, views and loss (the bench used to time a classifier)."""
    from hpcnn.bench.workload import build_workload
    from hpcnn.dist import SingleComm
    from hpcnn.ssl.simclr import SimCLR
    from hpcnn.train.loop import prepare

    cfg = load_job(None, ["ssl.method=simclr", "data.source=synthetic", "data.image_size=16", "data.channels=3",
                          "model.channels=[8,16]", "train.batch_size=8", "ssl.projection_hidden=32",
                          "ssl.projection_dim=16"])
    work = build_workload(cfg, SingleComm(), torch.device("cpu"), num_classes=8)
    assert isinstance(work.raw_model, SimCLR)
    x = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    views = prepare(x, work.ctx, 0, 0)
    assert views.shape == (16, 3, 16, 16)  # two views of each image in one forward pass
    assert work.ctx.criterion(work.train_model(views), None).item() > 0
