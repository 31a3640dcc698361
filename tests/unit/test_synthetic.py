"""The embedded synthetic galaxies: deterministic, disjoint splits, balanced, shape-only signal, files on disk."""
from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hpcnn.data import synthetic
from hpcnn.errors import ConfigError
from tests.helpers import REPO


def _digests(images: np.ndarray) -> set[str]:
    return {hashlib.sha1(im.tobytes()).hexdigest() for im in images}


def test_shape_dtype_and_label_range():
    for size in (16, 33, 64):
        images, labels = synthetic.generate(20, size=size, seed=3)
        assert images.shape == (20, size, size, 3) and images.dtype == np.uint8
        assert labels.shape == (20,) and labels.dtype == np.int64
        assert labels.min() >= 0 and labels.max() < len(synthetic.CLASSES)
        assert images.std() > 5, "images should not be blank"
    big, _ = synthetic.generate(2, size=256)
    assert big.shape == (2, 256, 256, 3)
    empty, no_labels = synthetic.generate(0)
    assert empty.shape == (0, 64, 64, 3) and no_labels.shape == (0,)


def test_classes_are_unique_snake_case_names():
    assert 6 <= len(synthetic.CLASSES) <= 10
    assert len(set(synthetic.CLASSES)) == len(synthetic.CLASSES)
    assert all(name.replace("_", "").isalpha() and name.islower() for name in synthetic.CLASSES)


def test_same_arguments_give_identical_arrays_and_seeds_differ():
    a_images, a_labels = synthetic.generate(40, size=32, seed=7, split="val")
    b_images, b_labels = synthetic.generate(40, size=32, seed=7, split="val")
    assert np.array_equal(a_images, b_images) and np.array_equal(a_labels, b_labels)
    c_images, _ = synthetic.generate(40, size=32, seed=8, split="val")
    assert not _digests(a_images) & _digests(c_images)


def test_a_shorter_request_is_a_prefix_of_a_longer_one():
    n_long = synthetic.BLOCK + 37                          # crosses a block boundary
    long_images, long_labels = synthetic.generate(n_long, size=24, seed=1)
    for n in (1, 50, synthetic.BLOCK, synthetic.BLOCK + 5):
        images, labels = synthetic.generate(n, size=24, seed=1)
        assert np.array_equal(images, long_images[:n]) and np.array_equal(labels, long_labels[:n])


def test_train_val_test_never_share_an_image():
    digests = {split: _digests(synthetic.generate(150, size=32, seed=0, split=split)[0])
               for split in synthetic.SPLITS}
    assert all(len(d) == 150 for d in digests.values()), "duplicates inside a split"
    assert not digests["train"] & digests["val"]
    assert not digests["train"] & digests["test"]
    assert not digests["val"] & digests["test"]


def test_the_same_galaxies_at_every_size():
    """Parameters do not depend on the image size: a resolution study sees the same objects."""
    _, small = synthetic.generate(60, size=32, seed=2)
    _, large = synthetic.generate(60, size=64, seed=2)
    assert np.array_equal(small, large)


@pytest.mark.parametrize("n", [8, 83, 800])
def test_classes_are_balanced(n):
    counts = np.bincount(synthetic.generate(n, size=16, seed=5)[1], minlength=len(synthetic.CLASSES))
    assert counts.max() - counts.min() <= 1, counts


@pytest.mark.parametrize("kwargs", [{"split": "dev"}, {"size": 8}, {"size": 300}, {"n": -1}, {"seed": -2}])
def test_bad_arguments_are_config_errors(kwargs):
    args = {"n": 4, "size": 32, "seed": 0, "split": "train", **kwargs}
    with pytest.raises(ConfigError):
        synthetic.generate(**args)


def test_rendering_is_vectorised_per_block(monkeypatch):
    """Not a timing test: the renderer is called once per batch of images, never per image."""
    calls = []
    original = synthetic._render_batch
    monkeypatch.setattr(synthetic, "_render_batch", lambda *a, **k: calls.append(1) or original(*a, **k))
    synthetic.generate(2 * synthetic.BLOCK, size=64)
    assert len(calls) == 2


def _colour_brightness_features(images: np.ndarray) -> np.ndarray:
    pixels = images.reshape(len(images), -1, 3).astype(np.float32)
    return np.concatenate([pixels.mean(1), pixels.std(1)], axis=1)


def test_colour_and_brightness_alone_are_near_chance():
    """Per-channel mean and std (colour, total brightness, contrast) must not give the class away."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = synthetic.generate(1200, size=32, seed=11, split="train")
    x_val, y_val = synthetic.generate(600, size=32, seed=11, split="val")
    f_train, f_val = _colour_brightness_features(x_train), _colour_brightness_features(x_val)
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    chance = 1 / len(synthetic.CLASSES)
    assert clf.fit(f_train, y_train).score(f_val, y_val) < chance + 0.1
    # positive control: the same features and classifier do predict what they can see (brightness)
    brighter = lambda f: (f[:, :3].mean(1) > np.median(f_train[:, :3].mean(1))).astype(int)  # noqa: E731
    assert clf.fit(f_train, brighter(f_train)).score(f_val, brighter(f_val)) > 0.9


def test_generator_imports_and_runs_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            "from hpcnn.data import synthetic; images, labels = synthetic.generate(3, size=16); print(images.shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "(3, 16, 16, 3)" in proc.stdout


def test_write_image_folder_with_splits_writes_the_generated_images(tmp_path):
    out = tmp_path / "galaxies"
    result = synthetic.write_image_folder(out, 40, size=24, seed=4,
                                          split_fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    assert result["splits"] == {"train": 20, "val": 10, "test": 10}
    for split, n in result["splits"].items():
        files = sorted((out / split).glob("*/*.png"))
        assert len(files) == n
        assert {p.name for p in (out / split).iterdir()} == set(synthetic.CLASSES)
        images, labels = synthetic.generate(n, size=24, seed=4, split=split)
        for path in files:
            index = int(path.stem.split("_")[1])
            assert path.parent.name == synthetic.CLASSES[labels[index]]
            assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), images[index])  # PNG is lossless
        assert sum(result["per_class"][split].values()) == n


def test_write_image_folder_without_splits_as_jpeg(tmp_path):
    result = synthetic.write_image_folder(tmp_path / "flat", 17, size=32, fmt="jpg")
    files = sorted((tmp_path / "flat").glob("*/*.jpg"))
    assert result["splits"] == {"all": 17} and len(files) == 17
    with Image.open(files[0]) as im:
        assert im.size == (32, 32) and im.mode == "RGB"


def test_write_image_folder_rejects_bad_requests(tmp_path):
    with pytest.raises(ConfigError, match="format"):
        synthetic.write_image_folder(tmp_path / "a", 4, fmt="gif")
    with pytest.raises(ConfigError, match="split_fractions"):
        synthetic.write_image_folder(tmp_path / "b", 4, split_fractions={"train": 0.9, "holdout": 0.1})
    with pytest.raises(ConfigError, match="split_fractions"):
        synthetic.write_image_folder(tmp_path / "c", 4, split_fractions={"train": 0.8, "val": 0.4})
    with pytest.raises(ConfigError, match="size"):
        synthetic.write_image_folder(tmp_path / "e", 4, size=1000)
    assert not (tmp_path / "e").exists(), "nothing is written for a bad request"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        synthetic.write_image_folder(tmp_path / "d", 4)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["keep.txt"]
