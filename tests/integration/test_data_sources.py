"""Real files through every data source: folders (with a corrupt image), HDF5, digits, splits.

Bad folders a new user makes (an empty class folder, a single class, a dangling symlink) fail
before training with a DatasetError naming the folder or file, or are skipped and listed."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hpcnn.config import load_job
from hpcnn.data.sources import load_splits, split_indices
from hpcnn.errors import DatasetError
from tests.helpers import TINY, run_hpcnn


def make_folder(root, per_class=30, size=20, corrupt=(), classes=("blobs", "stripes")):
    rng = np.random.default_rng(0)
    for name in classes:
        d = root / name
        d.mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            if name == "stripes":
                img[:, ::4] = 250
            else:
                img[size // 3: 2 * size // 3, size // 3: 2 * size // 3] = 250
            Image.fromarray(img).save(d / f"{i:03d}.png")
    for rel in corrupt:
        (root / rel).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root


def data_cfg(*overrides):
    return load_job(None, list(overrides)).data


def test_folder_split_and_corrupt_file_skipped_and_counted(tmp_path):
    root = make_folder(tmp_path / "imgs", corrupt=["stripes/bad.png"])
    splits = load_splits(data_cfg("data.source=folder", f"data.root={root}", "data.image_size=16"))
    assert splits.classes == ["blobs", "stripes"]
    assert splits.skipped_files == [str(root / "stripes" / "bad.png")]
    total = len(splits.train) + len(splits.val) + len(splits.test)
    assert total == 60
    x, y = splits.train[0]
    assert tuple(x.shape) == (3, 16, 16) and x.dtype.is_floating_point is False
    assert not set(splits.train.paths) & set(splits.val.paths)


def test_corrupt_file_fails_fast_when_asked(tmp_path):
    root = make_folder(tmp_path / "imgs", corrupt=["blobs/broken.png"])
    with pytest.raises(DatasetError) as err:
        load_splits(data_cfg("data.source=folder", f"data.root={root}", "data.on_corrupt=fail"))
    assert "broken.png" in str(err.value) and "on_corrupt" in str(err.value)


def test_train_val_test_subfolders_are_used_as_given(tmp_path):
    for split, n in (("train", 12), ("val", 4), ("test", 3)):
        make_folder(tmp_path / "d" / split, per_class=n)
    splits = load_splits(data_cfg("data.source=folder", f"data.root={tmp_path / 'd'}"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 8, 6)


def test_training_on_folder_reports_skipped_files(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=40, corrupt=["blobs/x.jpg"])
    run_dir = tmp_path / "run"
    proc = run_hpcnn("train", *TINY, "data.source=folder", f"data.root={root}", "data.channels=3",
                     "train.batch_size=16", f"--run-dir={run_dir}", timeout=180)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["skipped_files"] == 1 and summary["skipped_file_list"][0].endswith("x.jpg")
    assert summary["metrics"]["val"]["accuracy"] > 0.8  # stripes vs blobs is easy


def folder_error(root, *overrides) -> str:
    with pytest.raises(DatasetError) as err:
        load_splits(data_cfg("data.source=folder", f"data.root={root}", *overrides))
    return str(err.value)


@pytest.mark.parametrize("split", ["", "train"])
def test_empty_class_folder_is_named_not_made_a_class(tmp_path, split):
    root = tmp_path / "d"
    if split:
        for s in ("train", "val"):
            make_folder(root / s, per_class=6)
            (root / s / "empty_class").mkdir()
    else:
        make_folder(root, per_class=6)
        (root / "empty_class").mkdir()
    (root / split / "empty_class" / "notes.txt").write_text("not an image")
    message = folder_error(root)
    assert f"class folder {root / split / 'empty_class'} has no readable images" in message
    assert "no image files" in message and "remove the folder, or add images" in message


def test_class_folder_of_only_unreadable_files_is_named(tmp_path):
    (tmp_path / "d" / "broken").mkdir(parents=True)
    root = make_folder(tmp_path / "d", per_class=6, corrupt=["broken/a.png", "broken/b.jpg"])
    message = folder_error(root)
    assert f"class folder {root / 'broken'} has no readable images (all 2 of its image files are unreadable)" in message


def test_empty_class_folder_in_val_or_test_is_allowed(tmp_path):
    # `hpcnn data generate` writes every class folder, so a small val/test split can have empty ones
    for split, n in (("train", 8), ("val", 3), ("test", 2)):
        make_folder(tmp_path / "d" / split, per_class=n)
    for name in ("blobs", "stripes"):
        for f in (tmp_path / "d" / "test" / name).iterdir():
            if name == "stripes":
                f.unlink()
    splits = load_splits(data_cfg("data.source=folder", f"data.root={tmp_path / 'd'}"))
    assert splits.classes == ["blobs", "stripes"] and set(splits.test.labels.tolist()) == {0}


def test_class_folder_missing_from_val_is_named(tmp_path):
    make_folder(tmp_path / "d" / "train", per_class=4, classes=("blobs", "stripes", "rings"))
    make_folder(tmp_path / "d" / "val", per_class=2)
    message = folder_error(tmp_path / "d")
    assert f"class folders of {tmp_path / 'd' / 'val'} differ" in message and "missing: rings" in message


@pytest.mark.parametrize("split", ["", "train"])
def test_single_class_folder_is_an_error(tmp_path, split):
    root = tmp_path / "d"
    for s in ([split, "val"] if split else [""]):
        make_folder(root / s, per_class=10, classes=("stripes",))
    message = folder_error(root)
    assert f"{root / split} holds a single class folder (stripes)" in message and "two classes" in message


def test_split_folders_without_val_are_not_taken_for_classes(tmp_path):
    for split in ("train", "test"):
        make_folder(tmp_path / "d" / split, per_class=4)
    assert "holds only split folders (test, train)" in folder_error(tmp_path / "d")


def test_dangling_symlink_is_skipped_and_listed(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    link = root / "blobs" / "gone.png"
    link.symlink_to(tmp_path / "deleted.png")
    splits = load_splits(data_cfg("data.source=folder", f"data.root={root}", "data.image_size=16"))
    assert splits.skipped_files == [str(link)]
    assert len(splits.train) + len(splits.val) + len(splits.test) == 20
    assert str(link) not in splits.train.paths + splits.val.paths + splits.test.paths
    x, _ = splits.train[0]
    assert tuple(x.shape) == (3, 16, 16)


def test_dangling_symlink_fails_when_asked(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=10)
    link = root / "stripes" / "gone.jpg"
    link.symlink_to(tmp_path / "deleted.jpg")
    message = folder_error(root, "data.on_corrupt=fail")
    assert str(link) in message and "dangling symlink" in message and "on_corrupt" in message


def test_train_with_an_empty_class_folder_stops_before_training(tmp_path):
    root = make_folder(tmp_path / "imgs", per_class=20)
    (root / "empty_class").mkdir()
    run_dir = tmp_path / "run"
    proc = run_hpcnn("train", *TINY, "data.source=folder", f"data.root={root}", "data.channels=3",
                     "train.batch_size=16", f"--run-dir={run_dir}", timeout=180)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(root / "empty_class") in line
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "summary.json").exists()


def test_hdf5_galaxy10_layout(tmp_path):
    import h5py  # in the dev extra: a missing one is a failure, not a skip
    rng = np.random.default_rng(0)
    path = tmp_path / "g10.h5"
    with h5py.File(path, "w") as f:
        f["images"] = rng.integers(0, 255, (50, 24, 24, 3), dtype=np.uint8)
        f["ans"] = np.arange(50) % 5
    splits = load_splits(data_cfg("data.source=hdf5", f"data.root={path}", "data.image_size=16"))
    assert len(splits.classes) == 5 and len(splits.train) + len(splits.val) + len(splits.test) == 50
    assert tuple(splits.train.images.shape[1:]) == (3, 16, 16)


def test_hdf5_missing_keys_is_named(tmp_path):
    import h5py  # in the dev extra: a missing one is a failure, not a skip
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["pixels"] = np.zeros((2, 4, 4), dtype=np.uint8)
    with pytest.raises(DatasetError, match="lacks 'images'"):
        load_splits(data_cfg("data.source=hdf5", f"data.root={path}"))


def test_digits_ships_with_scikit_learn():
    splits = load_splits(data_cfg("data.source=digits", "data.image_size=16", "data.channels=1"))
    assert len(splits.classes) == 10
    assert len(splits.train) + len(splits.val) + len(splits.test) == 1797


def test_stratified_split_is_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), 25)
    a = split_indices(labels, 0.2, 0.2, seed=3)
    assert a == split_indices(labels, 0.2, 0.2, seed=3)
    assert a != split_indices(labels, 0.2, 0.2, seed=4)
    tr, va, te = map(set, a)
    assert not (tr & va or tr & te or va & te) and len(tr | va | te) == 100
    assert {int(labels[i]) for i in va} == {0, 1, 2, 3}
