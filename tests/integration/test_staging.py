"""data.stage without Slurm: copy once, reuse a verified copy, refuse damaged data, fail early without room.

The multi-node side (one copy per node, the node's other ranks waiting, requeue, cleanup) runs on the
local Slurm in tests/slurm/test_staging.py.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from hpcnn.config import load_job
from hpcnn.data import synthetic
from hpcnn.data.pack import pack
from hpcnn.data.sources import load_splits
from hpcnn.data.staging import LOG, staged
from hpcnn.errors import ConfigError, DatasetError, ResourceError
from hpcnn.slurm.site.preflight import check_stage
from hpcnn.slurm.site.profiles import profile_from_dict


@pytest.fixture(scope="module")
def small_pack(tmp_path_factory):
    root = tmp_path_factory.mktemp("stage-src")
    synthetic.write_image_folder(root / "folder", 60, size=16, seed=1,
                                 split_fractions={"train": 0.6, "val": 0.2, "test": 0.2}, fmt="png")
    cfg = load_job(None, ["data.source=folder", f"data.root={root / 'folder'}", "data.image_size=16"])
    pack(load_splits(cfg.data), root / "pack", 4000, {})
    return root / "pack"


def data_cfg(source, root, stage):
    return load_job(None, [f"data.source={source}", f"data.root={root}", f"data.stage={stage}",
                           "data.image_size=16"]).data


def stage_log(staged_cfg):
    """'copied' / 'reused', one per staging of this node's directory."""
    return [line.split()[1] for line in (Path(staged_cfg.root) / LOG).read_text().splitlines()]


def test_stage_copies_once_then_reuses_the_verified_copy(small_pack, tmp_path):
    cfg = data_cfg("shards", small_pack, tmp_path / "scratch")
    first = staged(cfg)
    assert Path(first.root).is_relative_to(tmp_path / "scratch") and first.stage == "none"
    again = staged(cfg)
    assert again.root == first.root and stage_log(first) == ["copied", "reused"]
    a, b = load_splits(dataclasses.replace(cfg, stage="none")), load_splits(cfg)
    assert torch.equal(a.train.labels, b.train.labels) and torch.equal(a.train[3][0], b.train[3][0])
    assert Path(b.train.index.root) == Path(first.root)  # training reads the local copy


def test_a_damaged_local_copy_is_copied_again(small_pack, tmp_path):
    cfg = data_cfg("shards", small_pack, tmp_path / "scratch")
    local = Path(staged(cfg).root) / "train-000000.tar"
    original = local.read_bytes()
    local.write_bytes(b"x" + original[1:])  # same size, other bytes: only the checksum tells
    assert Path(staged(cfg).root) == local.parent and local.read_bytes() == original
    assert stage_log(dataclasses.replace(cfg, root=str(local.parent))) == ["copied", "copied"]


def test_a_source_that_does_not_match_its_index_is_refused(small_pack, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    for f in small_pack.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    data = bytearray((bad / "val-000000.tar").read_bytes())
    data[600] ^= 0xFF
    (bad / "val-000000.tar").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="does not match the checksum in its pack index"):
        staged(data_cfg("shards", bad, tmp_path / "scratch"))


def test_an_hdf5_file_is_staged_and_read_from_the_copy(tmp_path):
    h5py = pytest.importorskip("h5py")
    src = tmp_path / "gal.h5"
    rng = np.random.default_rng(0)
    with h5py.File(src, "w") as f:
        f["images"] = rng.integers(0, 255, (40, 16, 16, 3), dtype=np.uint8)
        f["ans"] = np.arange(40) % 2
    cfg = data_cfg("hdf5", src, tmp_path / "scratch")
    local = staged(cfg)
    assert Path(local.root).name == "gal.h5" and Path(local.root).read_bytes() == src.read_bytes()
    assert len(load_splits(cfg).train) == len(load_splits(dataclasses.replace(cfg, stage="none")).train)


def test_only_packs_and_hdf5_files_can_be_staged(tmp_path):
    with pytest.raises(ConfigError, match="data.stage works for data.source shards or hdf5"):
        staged(data_cfg("folder", tmp_path, "auto"))


def test_preflight_rejects_data_larger_than_the_profiles_local_scratch(small_pack):
    cfg = load_job(None, ["data.source=shards", f"data.root={small_pack}", "data.stage=auto"])
    check_stage(cfg, profile_from_dict({"local_scratch_gb": 1}))
    with pytest.raises(ResourceError) as err:
        check_stage(cfg, profile_from_dict({"local_scratch_gb": 1e-6, "name": "tiny"}))
    assert "does not fit node-local storage (profile tiny local_scratch_gb: 1e-06)" in str(err.value)
    assert "\n" not in str(err.value)


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 64 KB file system (tmpfs), where the pack does not fit."""
    target = tmp_path / "small"
    target.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)],
                                           capture_output=True, timeout=30).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    yield target
    subprocess.run(["umount", str(target)], capture_output=True, timeout=30)


def test_a_target_without_room_fails_before_copying(small_pack, tiny_fs):
    size = sum(s["bytes"] for sp in json.loads((small_pack / "index.json").read_text())["splits"].values()
               for s in sp["shards"])
    assert size > 64_000
    with pytest.raises(DatasetError, match=r"node-local storage .* has 65.5 KB free but the data needs") as err:
        staged(data_cfg("shards", small_pack, tiny_fs))
    assert "\n" not in str(err.value)
    assert not list(tiny_fs.rglob("*.tar"))  # nothing copied
