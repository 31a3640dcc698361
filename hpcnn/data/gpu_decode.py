"""JPEG decoding on the training GPU (nvJPEG via ``torchvision.io.decode_jpeg``), batched.

With ``data.decode: gpu`` the DataLoader workers only read file bytes; the training process
decodes the whole batch on the device in one call, resizes there (the same geometry as the
CPU path: whole image to ``image_size``, or torchvision's shorter-side resize + centre crop),
and hands the loop a uint8 batch already on the device. Augmentation and normalisation were
already batch-wise on the device (``augment.py``), so no per-image CPU work is left.

``data.decode``: ``cpu`` = PIL in the workers (the fallback, and what evaluation and
``hpcnn predict`` always use); ``gpu`` = this module, an error without a GPU or without an
image folder; ``auto`` = gpu when the job trains on a GPU from a folder whose training images
are all JPEG, else cpu. Non-JPEG files in a gpu-decoded set are decoded on the CPU in the
workers; a file nvJPEG rejects is retried on the CPU, then dropped (``on_corrupt: skip``) or fails.
"""
from __future__ import annotations

import logging
import warnings

import torch

from ..errors import ConfigError, DatasetError
from .imagesets import resize_uint8
from .loaders import make_loader

log = logging.getLogger("hpcnn.data")
# torchvision 0.29 deprecates torchvision.io's codecs in favour of TorchCodec; they still work and are what
# GPU nodes' torchvision versions ship. One narrow filter instead of a warning per batch.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)
JPEG_SUFFIXES = (".jpg", ".jpeg")


def resolve_decode(data_cfg, device: torch.device, train_paths=None) -> str:
    """'cpu' or 'gpu' for this job on this device; ConfigError for a gpu request that cannot run."""
    mode = data_cfg.decode
    if mode == "cpu":
        return "cpu"
    if mode == "gpu":
        if device.type != "cuda":
            raise ConfigError("data.decode is gpu but this job runs on the CPU (no GPU visible)", "data.decode",
                              "use auto (GPU decoding where a GPU trains) or cpu")
        if data_cfg.source != "folder":
            raise ConfigError(f"data.decode gpu decodes image files, but data.source is {data_cfg.source} "
                              "(images already in memory)", "data.decode", "use auto or cpu")
        return "gpu"
    if device.type != "cuda" or data_cfg.source != "folder":
        return "cpu"
    all_jpeg = train_paths is None or all(str(p).lower().endswith(JPEG_SUFFIXES) for p in train_paths)
    return "gpu" if all_jpeg else "cpu"


class EncodedImageSet:
    """A FileImageSet's files as raw bytes (JPEG) or, for other formats, decoded on the CPU."""

    def __init__(self, files):
        self.files = files  # a FileImageSet: paths, labels, size, channels, on_corrupt, crop

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        path = self.files.paths[i]
        if not path.lower().endswith(JPEG_SUFFIXES):
            return self.files[i]  # PIL, resized; None when corrupt (collate drops it)
        from torchvision.io import read_file

        try:
            return read_file(path), int(self.files.labels[i]), i
        except Exception as err:
            if self.files.on_corrupt == "fail":
                raise DatasetError(f"unreadable image: {err}", path) from None
            log.warning("skipping unreadable image %s (%s)", path, err)
            return None


def collate_encoded(batch):
    """Keep the items as a list: the decoder needs each file's bytes (or decoded image) separately."""
    items = [b for b in batch if b is not None]
    return items, torch.tensor([b[1] for b in items], dtype=torch.int64)


class DeviceDecoder:
    """A list of encoded/decoded items -> one uint8 (B,C,S,S) batch on ``device``."""

    def __init__(self, files, device: torch.device):
        self.files, self.device = files, torch.device(device)

    def _decode(self, encoded: list) -> list:
        from torchvision.io import ImageReadMode, decode_jpeg

        mode = ImageReadMode.RGB if self.files.channels == 3 else ImageReadMode.GRAY
        try:
            return decode_jpeg(encoded, mode=mode, device=self.device)
        except RuntimeError:  # one bad file fails the batch: find it, decode the rest one by one
            out = []
            for data in encoded:
                try:
                    out.append(decode_jpeg(data, mode=mode, device=self.device))
                except RuntimeError:
                    out.append(None)
            return out

    def __call__(self, items: list, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        decoded = iter(self._decode([it[0] for it in items if it[0].ndim == 1]))
        images: list = [None] * len(items)  # (C,S,S) on the device; None: dropped (corrupt, on_corrupt=skip)
        by_shape: dict[tuple, list[int]] = {}  # nvJPEG's images at their own size, resized below
        for k, it in enumerate(items):
            img = next(decoded) if it[0].ndim == 1 else None
            if img is not None:
                images[k] = img
                by_shape.setdefault(tuple(img.shape), []).append(k)
                continue
            # PIL's images are already sized and cropped: a worker's (non-JPEG), or a retry of what nvJPEG
            # refused (DatasetError with on_corrupt=fail, None with skip)
            pil = it if it[0].ndim == 3 else self.files[it[2]]
            images[k] = None if pil is None else pil[0].to(self.device, non_blocking=True)
        for ks in by_shape.values():  # one resize per distinct input size (usually one), as on the CPU path
            resized = resize_uint8(torch.stack([images[k] for k in ks]), self.files.size, self.files.crop)
            for j, k in enumerate(ks):
                images[k] = resized[j]
        keep = [k for k, img in enumerate(images) if img is not None]
        if not keep:
            s = self.files.size
            return (torch.empty(0, self.files.channels, s, s, dtype=torch.uint8, device=self.device),
                    labels[:0].to(self.device))
        return torch.stack([images[k] for k in keep]), labels[keep].to(self.device, non_blocking=True)


class DecodingLoader:
    """Wraps a DataLoader of encoded items: yields (uint8 batch on the device, labels on the device)."""

    def __init__(self, loader, decoder: DeviceDecoder):
        self.loader, self.decoder = loader, decoder

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for items, labels in self.loader:
            yield self.decoder(items, labels)


def train_loader(files, batch_sampler, data_cfg, device, pin_memory: bool):
    """(the training loader, 'cpu' | 'gpu'): the Trainer's and the benchmark's one choice of pipeline.
    For 'gpu' the workers read bytes (nothing to pin) and the device decodes whole batches."""
    if resolve_decode(data_cfg, device, getattr(files, "paths", None)) == "cpu":
        return make_loader(files, batch_sampler, data_cfg.num_workers, pin_memory), "cpu"
    if not hasattr(files, "paths"):
        raise ConfigError("data.decode gpu needs an image folder (files to decode)", "data.decode", "use auto or cpu")
    loader = make_loader(EncodedImageSet(files), batch_sampler, data_cfg.num_workers, False, collate_fn=collate_encoded)
    return DecodingLoader(loader, DeviceDecoder(files, device)), "gpu"


__all__ = ["DecodingLoader", "DeviceDecoder", "EncodedImageSet", "resolve_decode", "train_loader"]
