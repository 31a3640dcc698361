"""An image folder listed and verified once per job, re-verified only where it changed (issue 16, item 1)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from hpcnn.config import load_job
from hpcnn.data import jobscope
from hpcnn.data.listing import CACHE_NAME, MANIFEST_NAME
from hpcnn.data.sources import load_splits, split_indices
from hpcnn.data.synthetic import write_image_folder
from hpcnn.dist.comm import SingleComm
from tests.helpers import PYTHON, REPO

N_FILES = 400


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("listing") / "images"
    write_image_folder(root, N_FILES, size=16)
    return root


@pytest.fixture
def own_folder(folder, tmp_path):
    """A private copy (these tests change files and the cache)."""
    root = tmp_path / "images"
    shutil.copytree(folder, root)
    (root / CACHE_NAME).unlink(missing_ok=True)
    return root


class OpenCounter:
    """Counts the image files PIL opens (wraps the real PIL.Image.open)."""

    def __init__(self, monkeypatch):
        self.paths: list[str] = []
        real = Image.open

        def counting(fp, *args, **kwargs):
            self.paths.append(str(fp))
            return real(fp, *args, **kwargs)

        monkeypatch.setattr(Image, "open", counting)


def load_as_job(root, run_dir, *overrides):
    """load_splits inside a (one-rank) job: the manifest lands in run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_job(None, ["data.source=folder", f"data.root={root}", "data.image_size=16", *overrides]).data
    with jobscope.bound(SingleComm(), run_dir):
        splits = load_splits(cfg)
    return splits, json.loads((run_dir / MANIFEST_NAME).read_text())


def test_second_job_reverifies_only_changed_files(own_folder, tmp_path, monkeypatch):
    opens = OpenCounter(monkeypatch)
    first, manifest = load_as_job(own_folder, tmp_path / "run1")
    assert manifest["stats"] == {"files": N_FILES, "verified": N_FILES, "reused": 0} and len(opens.paths) == N_FILES
    opens.paths.clear()
    second, manifest = load_as_job(own_folder, tmp_path / "run2")
    assert manifest["stats"]["verified"] == 0 and opens.paths == []  # was: every file opened by every job
    assert second.train.paths == first.train.paths and second.val.paths == first.val.paths
    changed = sorted((own_folder / "spiral").iterdir())[0]
    Image.new("RGB", (16, 16), (200, 10, 10)).save(changed)
    os.utime(changed, ns=(1, 1))  # a new mtime whatever the clock's resolution
    (own_folder / "spiral" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    third, manifest = load_as_job(own_folder, tmp_path / "run3")
    assert sorted(opens.paths) == sorted([str(changed), str(own_folder / "spiral" / "broken.png")])
    assert manifest["stats"]["verified"] == 2 and third.skipped_files == [str(own_folder / "spiral" / "broken.png")]


def test_verify_none_opens_nothing_and_full_decodes(own_folder, tmp_path, monkeypatch):
    opens = OpenCounter(monkeypatch)
    (own_folder / "spiral" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    splits, manifest = load_as_job(own_folder, tmp_path / "none", "data.verify=none")
    assert opens.paths == [] and manifest["verify"] == "none" and splits.skipped_files == []
    full, manifest = load_as_job(own_folder, tmp_path / "full", "data.verify=full")
    assert len(opens.paths) == N_FILES + 1 and full.skipped_files == [str(own_folder / "spiral" / "broken.png")]
    opens.paths.clear()
    load_as_job(own_folder, tmp_path / "header", "data.verify=header")  # a full verdict vouches for a header check
    assert opens.paths == [str(own_folder / "spiral" / "broken.png")]


@pytest.mark.timeout(120)
def test_fifo_and_other_non_files_are_not_listed(own_folder, tmp_path):
    os.mkfifo(own_folder / "spiral" / "pipe.png")  # opening it would wait for a writer forever
    (own_folder / "spiral" / "folder.png").mkdir()
    splits, manifest = load_as_job(own_folder, tmp_path / "run")
    listed = {row[0] for row in manifest["splits"][""]["files"]}
    assert manifest["stats"]["files"] == N_FILES and not {p for p in listed if "pipe" in p or "folder.png" in p}
    assert splits.skipped_files == []


def test_listing_order_and_splits_match_pathlib(own_folder):
    """The manifest lists files in the order sorted(rglob) gave: the same splits, so resume and accuracy hold."""
    nested = own_folder / "spiral" / "deeper"
    nested.mkdir()
    shutil.copy(sorted((own_folder / "spiral").glob("*.png"))[0], nested / "a.png")
    cfg = load_job(None, ["data.source=folder", f"data.root={own_folder}"]).data
    splits = load_splits(cfg)
    classes = sorted(p.name for p in own_folder.iterdir() if p.is_dir())
    expected, labels = [], []
    for label, name in enumerate(classes):
        files = [str(f) for f in sorted((own_folder / name).rglob("*")) if f.suffix == ".png"]
        expected += files
        labels += [label] * len(files)
    tr, va, te = split_indices(np.asarray(labels), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    assert splits.train.paths == [expected[i] for i in tr] and splits.val.paths == [expected[i] for i in va]
    assert splits.test.paths == [expected[i] for i in te] and str(nested / "a.png") in expected


CALL = re.compile(r'^\d+\s+\w+\(.*"([^"]*)"')


def data_calls(log, root) -> int:
    return sum(1 for line in log.read_text(errors="replace").splitlines()
               if (m := CALL.match(line)) and m.group(1).startswith(str(root)))


@pytest.mark.skipif(shutil.which("strace") is None and os.environ.get("CI") != "true",
                    reason="needs strace (tests/slurm/cluster.sh install brings it; CI must run this)")
def test_two_ranks_touch_the_folder_as_often_as_one(own_folder, tmp_path):
    """Was: every rank listed the tree and opened every file (2 ranks: 2x the calls on the folder)."""
    counts, digests = {}, set()
    script = str(REPO / "tests" / "support" / "load_data_rank.py")
    for ranks in (1, 2):
        (own_folder / CACHE_NAME).unlink(missing_ok=True)
        log, out = tmp_path / f"strace{ranks}.log", tmp_path / f"run{ranks}"
        out.mkdir()
        launch = [PYTHON, script] if ranks == 1 else [PYTHON, "-m", "torch.distributed.run", "--standalone",
                                                      "--nproc_per_node=2", script]
        proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=%file", "-o", str(log), *launch, str(out),
                               "data.source=folder", f"data.root={own_folder}", "data.image_size=16"],
                              capture_output=True, text=True, timeout=300, cwd=REPO)
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts[ranks] = data_calls(log, own_folder)
        assert json.loads((out / MANIFEST_NAME).read_text())["stats"]["verified"] == N_FILES
        digests |= {json.loads((out / f"rank{r}.json").read_text())["digest"] for r in range(ranks)}
    assert counts[1] >= 2 * N_FILES  # listed (a stat each) and verified (an open each)
    assert counts[2] <= 1.1 * counts[1], counts
    assert len(digests) == 1  # every rank has the same files, labels and order
