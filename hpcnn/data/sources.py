"""Every data source behind one call: ``load_splits(data_cfg) -> Splits``.

Nothing here downloads: torchvision sets are read from a local root, and a missing one
fails with the exact ``hpcnn data fetch`` command to run on a login node with internet.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DatasetError
from .imagesets import FileImageSet, TensorImageSet, check_root, images_to_uint8
from .jobscope import current
from .listing import job_manifest
from .node_memory import content_tag, node_shared
from .shards import load_shard_sets

log = logging.getLogger("hpcnn.data")
TORCHVISION_SETS = {"CIFAR10", "CIFAR100", "MNIST", "FashionMNIST", "KMNIST", "SVHN"}


@dataclass
class Splits:
    train: object
    val: object
    test: object | None
    classes: list[str]
    skipped_files: list[str] = field(default_factory=list)


def split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int):
    """Stratified, seeded split so every class appears in every split."""
    rng = np.random.default_rng(seed)
    train, val, test = [], [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        n_val = max(1, int(round(len(idx) * val_fraction)))
        n_test = int(round(len(idx) * test_fraction))
        val += idx[:n_val].tolist()
        test += idx[n_val:n_val + n_test].tolist()
        train += idx[n_val + n_test:].tolist()
    return sorted(train), sorted(val), sorted(test)


def _split(full, cfg, classes: list[str], skipped: list[str] | None = None) -> Splits:
    """One labelled set split here into train/val[/test] (``split_indices`` with the config's fractions and seed)."""
    tr, va, te = split_indices(full.labels.numpy(), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    return Splits(full.subset(tr), full.subset(va), full.subset(te) if te else None, classes, skipped or [])


def _in_memory(cfg, part: str, build):
    """``build(alloc) -> (uint8 images, meta)``, held once per node unless ``data.shared_memory`` is off."""
    if not cfg.shared_memory:
        return build(lambda shape: torch.empty(shape, dtype=torch.uint8))
    tag = content_tag(part, cfg.source, cfg.root, cfg.name, cfg.image_size, cfg.channels, cfg.center_crop,
                      cfg.n_train, cfg.n_val, cfg.n_test, cfg.split_seed)
    return node_shared(current(), tag, build)


def _synthetic(cfg) -> Splits:
    from . import synthetic

    def make(n, split):
        def build(alloc):
            images, labels = synthetic.generate(n, size=cfg.image_size, seed=cfg.split_seed, split=split)
            return images_to_uint8(images, cfg.image_size, cfg.channels, cfg.center_crop, alloc), labels

        return TensorImageSet(*_in_memory(cfg, split, build))

    test = make(cfg.n_test, "test") if cfg.n_test > 0 else None
    return Splits(make(cfg.n_train, "train"), make(cfg.n_val, "val"), test, list(synthetic.CLASSES))


def _digits(cfg) -> Splits:
    def build(alloc):
        from sklearn.datasets import load_digits

        d = load_digits()
        images = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
        return images_to_uint8(images, cfg.image_size, cfg.channels, cfg.center_crop, alloc), d.target

    return _split(TensorImageSet(*_in_memory(cfg, "digits", build)), cfg, [str(i) for i in range(10)])


def _require_classes(folder: Path, classes: list[str], labels: list[int]) -> None:
    """At least one image, and at least two class folders (one class cannot be classified)."""
    if not classes or not labels:
        raise DatasetError(f"no images found under {folder}", "data.root",
                           "expected one sub-folder per class holding image files")
    if len(classes) == 1:
        raise DatasetError(f"{folder} holds a single class folder ({classes[0]}): classification needs at least "
                           "two classes", "data.root", "add one sub-folder of images per class")


def _require_images_per_class(folder: Path, classes: list[str], labels: list[int], keep: list[int]) -> None:
    """Every class folder must hold a readable image: an empty one would be a class nothing can teach."""
    found = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes))
    readable = np.bincount(np.asarray([labels[i] for i in keep], dtype=np.int64), minlength=len(classes))
    for name, n_found, n_readable in zip(classes, found, readable):
        if n_readable == 0:
            detail = f"all {n_found} of its image files are unreadable" if n_found else "it holds no image files"
            raise DatasetError(f"class folder {folder / name} has no readable images ({detail})", "data.root",
                               "remove the folder, or add images to it")


def _usable(files: list, on_corrupt: str) -> tuple[list[int], list[str]]:
    """Indices of the files the manifest found readable, and the paths of the others (or fail on the first)."""
    keep, skipped = [], []
    for i, (path, _, _, _, verdict) in enumerate(files):
        if not verdict:
            keep.append(i)
            continue
        if on_corrupt == "fail":
            raise DatasetError(f"corrupt or unreadable image: {verdict}", str(path),
                               "remove the file, or set data.on_corrupt: skip")
        log.warning("skipping unreadable image %s (%s)", path, verdict)
        skipped.append(str(path))
    return keep, skipped


def _folder(cfg) -> Splits:
    """Keras flow_from_directory layout: root/<class>/*.png (split here), or root/{train,val[,test]}/<class>/.

    Listed and verified once per job (``listing.job_manifest``), reusing the verdicts of earlier jobs.
    """
    root = check_root(cfg.root, "image folder")
    if not root.is_dir():
        raise DatasetError(f"image folder is not a directory: {root}", "data.root")
    listed = job_manifest(root, cfg.verify)["splits"]  # {"": root} or {"train": ..., "val": ...[, "test": ...]}
    root_classes = listed[""]["classes"] if "" in listed else []
    if root_classes and set(root_classes) <= {"train", "val", "test"}:
        raise DatasetError(f"{root} holds only split folders ({', '.join(root_classes)}) but not both train/ and val/",
                           "data.root", "add the missing split folder, or put the class folders directly under "
                           "data.root to have them split automatically")
    sets, skipped, classes = {}, [], None
    for split, entry in listed.items():
        d, names, files = Path(entry["folder"]), entry["classes"], entry["files"]
        labels = [f[3] for f in files]
        if classes is None:
            _require_classes(d, names, labels)
            classes = names
        elif names != classes:
            missing, extra = sorted(set(classes) - set(names)), sorted(set(names) - set(classes))
            raise DatasetError(f"class folders of {d} differ from those of {root / 'train'} (missing: "
                               f"{', '.join(missing) or '-'}; extra: {', '.join(extra) or '-'})", "data.root",
                               "every split needs the same class folders (an empty one is fine in val/test)")
        keep, bad = _usable(files, cfg.on_corrupt)
        if split in ("", "train"):  # val/test may lack a class (few images); training cannot
            _require_images_per_class(d, classes, labels, keep)
        skipped += bad
        sets[split] = FileImageSet([files[i][0] for i in keep], [labels[i] for i in keep], cfg.image_size,
                                   cfg.channels, cfg.on_corrupt, cfg.center_crop)
    if "" in sets:
        return _split(sets[""], cfg, classes, skipped)
    return Splits(sets["train"], sets["val"], sets.get("test"), classes, skipped)


def _torchvision(cfg) -> Splits:
    import torchvision.datasets as tvd

    name = cfg.name
    if name not in TORCHVISION_SETS:
        raise DatasetError(f"unsupported torchvision data set {name!r}", "data.name",
                           f"one of {', '.join(sorted(TORCHVISION_SETS))}")
    root = Path(cfg.root).expanduser()

    def build(train: bool, alloc):  # on one rank per node: the others never read the files
        which = {"split": "train" if train else "test"} if name == "SVHN" else {"train": train}
        try:
            ds = getattr(tvd, name)(str(root), download=False, **which)
        except RuntimeError as err:
            raise DatasetError(f"data set {name} not found under {root} ({err})", "data.root",
                               f"run `hpcnn data fetch {name} --root {root}` on a machine with internet") from None
        x = np.asarray(ds.data)
        if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[-1] not in (1, 3):  # SVHN is NCHW
            x = x.transpose(0, 2, 3, 1)
        y = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)))
        classes = [str(c) for c in getattr(ds, "classes", range(int(y.max()) + 1))]
        return images_to_uint8(x, cfg.image_size, cfg.channels, cfg.center_crop, alloc), (y, classes)

    images, (y, classes) = _in_memory(cfg, "train", functools.partial(build, True))
    full = TensorImageSet(images, y)
    tr, va, _ = split_indices(y, cfg.val_fraction, 0.0, cfg.split_seed)
    test_images, (yt, _) = _in_memory(cfg, "test", functools.partial(build, False))
    return Splits(full.subset(tr), full.subset(va), TensorImageSet(test_images, yt), classes)


def _hdf5(cfg) -> Splits:
    """Galaxy10-style HDF5: datasets ``images`` (N,H,W[,C]) uint8 and ``ans`` (or ``labels``).

    Read and resized a chunk at a time, straight into the node's shared uint8 tensor.
    """
    path = check_root(cfg.root, "HDF5 file")
    try:
        import h5py
    except ImportError:
        raise DatasetError("reading HDF5 needs h5py", "data.source: hdf5", "pip install 'hpcnn[hdf5]'") from None

    def build(alloc):
        try:
            with h5py.File(path, "r") as f:
                key = "ans" if "ans" in f else "labels"
                if "images" not in f or key not in f:
                    raise DatasetError(f"HDF5 file lacks 'images' and 'ans'/'labels' data sets (has {list(f)})",
                                       str(path))
                labels = np.asarray(f[key]).astype(np.int64)
                return images_to_uint8(f["images"], cfg.image_size, cfg.channels, cfg.center_crop, alloc), labels
        except OSError as err:
            raise DatasetError(f"cannot read HDF5 file: {err}", str(path)) from None

    st = path.stat()
    images, labels = _in_memory(cfg, f"hdf5:{st.st_size}:{st.st_mtime_ns}", build)
    return _split(TensorImageSet(images, labels), cfg, [str(i) for i in range(int(labels.max()) + 1)])


LOADERS = {"synthetic": _synthetic, "digits": _digits, "folder": _folder, "torchvision": _torchvision,
           "hdf5": _hdf5, "shards": lambda cfg: Splits(*load_shard_sets(cfg))}  # hpcnn data pack's tar shards


def _keep_classes(dataset, mapping: dict[int, int]):
    """The samples of the chosen classes, relabelled 0..K-1 in the chosen order."""
    labels = np.asarray(dataset.labels, dtype=np.int64)
    idx = [i for i, label in enumerate(labels) if label in mapping]
    subset = dataset.subset(idx)
    subset.labels = torch.as_tensor([mapping[int(label)] for label in labels[idx]], dtype=torch.int64)
    return subset


def select_classes(splits: Splits, names: list[str]) -> Splits:
    """``data.classes``: a task on some classes only (e.g. few-shot on classes a pretraining never saw)."""
    unknown = [n for n in names if n not in splits.classes]
    if unknown:
        raise DatasetError(f"data.classes names {', '.join(map(repr, unknown))}, which the data set does not have",
                           "data.classes", f"its classes are: {', '.join(splits.classes)}")
    mapping = {splits.classes.index(n): i for i, n in enumerate(names)}
    return Splits(_keep_classes(splits.train, mapping), _keep_classes(splits.val, mapping),
                  _keep_classes(splits.test, mapping) if splits.test is not None else None, list(names),
                  splits.skipped_files)


def limit_per_class(dataset, limit: int, seed: int):
    """``data.max_per_class``: at most ``limit`` training images per class, drawn with the split seed."""
    labels = np.asarray(dataset.labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels):
        keep += rng.permutation(np.flatnonzero(labels == c))[:limit].tolist()
    return dataset.subset(sorted(keep))


def load_splits(data_cfg) -> Splits:
    from .staging import staged

    data_cfg = staged(data_cfg)  # data.stage: the node-local copy's root (one copy per node)
    splits = LOADERS[data_cfg.source](data_cfg)
    if data_cfg.classes:
        splits = select_classes(splits, list(data_cfg.classes))
    if data_cfg.marker.enabled:
        from .marker import add_markers

        for split in ("train", "val", "test"):  # painting must not write into a node's shared tensor
            dataset = getattr(splits, split)
            if isinstance(dataset, TensorImageSet):
                setattr(splits, split, dataset.materialize())
        splits = add_markers(splits, data_cfg.marker, data_cfg.split_seed)
    if data_cfg.max_per_class:
        splits.train = limit_per_class(splits.train, data_cfg.max_per_class, data_cfg.split_seed)
    if len(splits.val) == 0:
        raise DatasetError("the validation split is empty", "data.val_fraction", "use a larger data set or fraction")
    return splits


def fetch(name: str, root: str) -> Path:
    """Download a torchvision data set to ``root`` (login node with internet; never inside a job)."""
    import torchvision.datasets as tvd

    if name not in TORCHVISION_SETS:
        raise DatasetError(f"unsupported torchvision data set {name!r}", "hpcnn data fetch",
                           f"one of {', '.join(sorted(TORCHVISION_SETS))}")
    root_path = Path(root).expanduser()
    root_path.mkdir(parents=True, exist_ok=True)
    cls = getattr(tvd, name)
    try:
        for kw in ({"split": "train"}, {"split": "test"}) if name == "SVHN" else ({"train": True}, {"train": False}):
            cls(str(root_path), download=True, **kw)
    except Exception as err:
        raise DatasetError(f"download of {name} failed: {err}", str(root_path),
                           "this needs internet; on a cluster run it on the login node") from None
    return root_path
