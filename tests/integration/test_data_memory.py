"""In-memory sources: resized in chunks straight to uint8, and held once per node (issue 16, item 2)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcnn.config import load_job
from hpcnn.data import imagesets
from hpcnn.data.imagesets import TensorImageSet, images_to_uint8, resize_uint8, to_channels
from hpcnn.data.node_memory import PREFIX, sweep_stale
from hpcnn.data.sources import load_splits
from tests.helpers import PYTHON, REPO
from tests.support.load_data_rank import content_digest

h5py = pytest.importorskip("h5py")

SIDE = 128
N_FILE = 2000  # 2000 x 128² x 3 = 98 MB


def old_from_numpy_hwc(images, size, channels, crop):
    """What hpcnn did before: the whole set at once, through one float copy."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(-1)
    x = x.permute(0, 3, 1, 2).contiguous()
    return to_channels(resize_uint8(x, size, crop), channels)


@pytest.fixture(scope="module")
def big_h5(tmp_path_factory):
    path = tmp_path_factory.mktemp("h5") / "big.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", (N_FILE, SIDE, SIDE, 3), dtype="uint8")
        for lo in range(0, N_FILE, 500):
            block = rng.integers(0, 256, (500, SIDE, SIDE, 3), dtype=np.uint8)
            block[:, :SIDE // 2] //= 3  # structure a resize can get wrong
            images[lo:lo + 500] = block
        f.create_dataset("ans", data=rng.integers(0, 4, N_FILE).astype(np.int64))
    yield path
    path.unlink()


@pytest.mark.parametrize("size,channels,crop", [(32, 3, None), (40, 1, None), (32, 3, 0.875), (64, 3, None)])
def test_chunked_resize_is_bitwise_the_whole_set_resize(monkeypatch, size, channels, crop):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (37, 48, 64, 3), dtype=np.uint8)
    images[:, ::7] = 255
    monkeypatch.setattr(imagesets, "CHUNK_BYTES", 5 * 48 * 64 * 3 * 4)  # 5 images a chunk, the last one short
    new = images_to_uint8(images, size, channels, crop)
    old = old_from_numpy_hwc(images, size, channels, crop)
    assert new.dtype == torch.uint8 and torch.equal(new, old)


def test_hdf5_splits_are_views_of_one_tensor_with_the_old_pixels(big_h5):
    cfg = load_job(None, ["data.source=hdf5", f"data.root={big_h5}", "data.image_size=32"]).data
    splits = load_splits(cfg)
    assert splits.train.base.data_ptr() == splits.val.base.data_ptr() == splits.test.base.data_ptr()
    with h5py.File(big_h5) as f:
        old = old_from_numpy_hwc(np.asarray(f["images"]), 32, 3, None)
    full = TensorImageSet(old, torch.zeros(len(old), dtype=torch.int64))
    for split in (splits.train, splits.val, splits.test):
        assert torch.equal(split.images, full.images[split.index])
        x, y = split.__getitems__([0, 3, 1])
        assert torch.equal(x, old[split.index[[0, 3, 1]]]) and y.tolist() == split.labels[[0, 3, 1]].tolist()


PEAK = textwrap.dedent("""
    import json, sys
    from hpcnn.config import load_job
    from hpcnn.data.sources import load_splits
    def hwm():
        return int([l for l in open("/proc/self/status") if l.startswith("VmHWM:")][0].split()[1]) * 1024
    cfg = load_job(None, sys.argv[1:]).data
    import h5py, torch, sklearn.metrics  # what the load itself does not cost
    before = hwm()
    splits = load_splits(cfg)
    print(json.dumps({"growth": hwm() - before, "n": len(splits.train) + len(splits.val) + len(splits.test)}))
""")


def test_hdf5_peak_memory_stays_near_the_file_size(big_h5):
    """Was: the file read whole, a contiguous copy, a float copy of it (4x) and copied subsets: ~7x the file."""
    proc = subprocess.run([PYTHON, "-c", PEAK, "data.source=hdf5", f"data.root={big_h5}", "data.image_size=64"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == N_FILE
    file_bytes = big_h5.stat().st_size
    assert result["growth"] <= 1.5 * file_bytes, f"peak grew {result['growth'] / file_bytes:.2f}x the file"


def _load_ranks(tmp_path, ranks: int, h5, shm) -> list[dict]:
    out = tmp_path / f"out{ranks}"
    out.mkdir()
    script = str(REPO / "tests" / "support" / "load_data_rank.py")
    launch = [PYTHON, script] if ranks == 1 else [PYTHON, "-m", "torch.distributed.run", "--standalone",
                                                  f"--nproc_per_node={ranks}", script]
    env = {**os.environ, "HPCNN_SHM_DIR": str(shm), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launch, str(out), "data.source=hdf5", f"data.root={h5}", f"data.image_size={SIDE}"],
                          capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]


def test_two_ranks_of_a_node_hold_the_data_once(big_h5, tmp_path):
    """Node memory (summed proportional set size) for 2 ranks <= 1.2x the data's size; the same pixels on both."""
    shm = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp_path))  # tmpfs: memory
    try:
        two = _load_ranks(tmp_path, 2, big_h5, shm)
        left = list(shm.iterdir())
    finally:
        shutil.rmtree(shm)
    growth = sum(r["after"]["Pss"] - r["before"]["Pss"] for r in two) * 1024
    data_bytes = N_FILE * 3 * SIDE * SIDE  # one rank alone grows by this much (see the test above)
    assert 0.8 * data_bytes <= growth <= 1.2 * data_bytes, f"2 ranks grew {growth / data_bytes:.2f}x the data"
    if str(shm).startswith("/dev/shm"):  # each rank is charged half of the one shared copy
        assert all(r["after"]["Pss_Shmem"] - r["before"]["Pss_Shmem"] > 0.4 * data_bytes / 1024 for r in two)
    with h5py.File(big_h5) as f:
        expected = old_from_numpy_hwc(np.asarray(f["images"]), SIDE, 3, None)
    train = load_splits(load_job(None, ["data.source=hdf5", f"data.root={big_h5}", f"data.image_size={SIDE}"]).data).train
    assert torch.equal(train.images, expected[train.index])
    assert {r["digest"] for r in two} == {content_digest(train)}  # both ranks see the one-process pixels and labels
    assert all(not r["shm_left"] for r in two) and not left  # the name went once all had mapped it


def test_stale_shared_file_of_a_dead_job_is_swept(tmp_path):
    dead = subprocess.run([PYTHON, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60).stdout.strip()
    stale = tmp_path / f"{PREFIX}local-{dead}-0123456789abcdef.u8"
    live = tmp_path / f"{PREFIX}local-{os.getpid()}-0123456789abcdef.u8"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    assert sweep_stale(tmp_path) == [stale]
    assert live.exists() and not stale.exists()


def test_marker_paints_private_copies_not_the_shared_tensor():
    cfg = load_job(None, ["data.source=synthetic", "data.n_train=64", "data.n_val=32", "data.n_test=32",
                          "data.image_size=16", "data.marker.enabled=true"]).data
    splits = load_splits(cfg)
    plain = load_splits(load_job(None, ["data.source=synthetic", "data.n_train=64", "data.n_val=32",
                                        "data.n_test=32", "data.image_size=16"]).data)
    assert not torch.equal(splits.train.images, plain.train.images)  # painted
    assert splits.train.index is None  # its own tensor


def test_statistics_of_a_large_sample_are_streamed(monkeypatch):
    """A 2,000-image sample of 256² would be a 1.6 GB float copy (twice inside std): summed in chunks instead."""
    from hpcnn.data.augment import Normalize
    from hpcnn.train import inputs

    images = torch.randint(0, 256, (300, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    train = TensorImageSet(images, torch.zeros(300, dtype=torch.int64)).subset(list(range(1, 300, 2)))
    exact = Normalize.from_sample(train.stats_sample())
    small = inputs._sample_statistics(train, True)  # under the threshold: the same computation as always
    assert torch.equal(small.mean, exact.mean) and torch.equal(small.std, exact.std)
    monkeypatch.setattr(inputs, "EXACT_STATS_BYTES", 0)
    monkeypatch.setattr(inputs, "STREAM_CHUNK_BYTES", 8 * 3 * 24 * 24 * 7)  # 7 images a chunk
    streamed = inputs._sample_statistics(train, True)
    assert torch.allclose(streamed.mean, exact.mean, atol=1e-6) and torch.allclose(streamed.std, exact.std, atol=1e-6)


STATS = textwrap.dedent("""
    import json, sys, torch
    from hpcnn.config import load_job
    from hpcnn.data import jobscope
    from hpcnn.data.imagesets import TensorImageSet
    from hpcnn.dist import make_comm
    from hpcnn.env import detect_world
    from hpcnn.train.inputs import job_inputs
    calls = []
    for name in ("stats_sample", "stats_chunks"):  # count who reads the statistics' sample
        def counted(self, *args, _f=getattr(TensorImageSet, name), _name=name, **kwargs):
            calls.append(_name)
            return _f(self, *args, **kwargs)
        setattr(TensorImageSet, name, counted)
    comm = make_comm(detect_world(), "gloo", torch.device("cpu"), 120)
    with jobscope.bound(comm, None):
        _, normalize = job_inputs(load_job(None, sys.argv[2:]), announce=False)
    result = {"calls": calls, "mean": normalize.mean.flatten().tolist(), "std": normalize.std.flatten().tolist()}
    open(f"{sys.argv[1]}/rank{comm.rank}.json", "w").write(json.dumps(result))
    comm.shutdown()
""")


def test_normalisation_statistics_are_computed_once_per_job(big_h5, tmp_path):
    """Rank 0 samples (2,000 images of 128², summed in float64 chunks); the others get its values, bitwise."""
    script = tmp_path / "stats_rank.py"
    script.write_text(STATS)
    shm = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp_path))
    env = {**os.environ, "HPCNN_SHM_DIR": str(shm), "OMP_NUM_THREADS": "1"}
    results = {}
    try:
        for ranks in (1, 2):
            out = tmp_path / f"stats{ranks}"
            out.mkdir()
            launch = [PYTHON] if ranks == 1 else [PYTHON, "-m", "torch.distributed.run", "--standalone",
                                                  f"--nproc_per_node={ranks}"]
            proc = subprocess.run([*launch, str(script), str(out), "data.source=hdf5", f"data.root={big_h5}",
                                   f"data.image_size={SIDE}"], capture_output=True, text=True, timeout=300,
                                  cwd=REPO, env=env)
            assert proc.returncode == 0, proc.stderr[-3000:]
            results[ranks] = [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]
    finally:
        shutil.rmtree(shm)
    (alone,), (first, second) = results[1], results[2]
    assert alone["calls"] == first["calls"] == ["stats_chunks"] and second["calls"] == []
    assert first["mean"] == second["mean"] == alone["mean"] and first["std"] == second["std"] == alone["std"]
