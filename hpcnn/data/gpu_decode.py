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

log = logging.getLogger("hpcnn.data")
DECODE_MODES = ("auto", "cpu", "gpu")
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
    if train_paths is not None and not all(str(p).lower().endswith(JPEG_SUFFIXES) for p in train_paths):
        return "cpu"
    return "gpu"


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

    def _mode(self):
        from torchvision.io import ImageReadMode

        return ImageReadMode.RGB if self.files.channels == 3 else ImageReadMode.GRAY

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        """Same geometry as the CPU path: ``imagesets.resize_uint8`` works on any device."""
        return resize_uint8(x, self.files.size, self.files.crop)

    def _decode(self, encoded: list) -> list:
        from torchvision.io import decode_jpeg

        try:
            return decode_jpeg(encoded, mode=self._mode(), device=self.device)
        except RuntimeError:  # one bad file fails the batch: find it, decode the rest one by one
            out = []
            for data in encoded:
                try:
                    out.append(decode_jpeg(data, mode=self._mode(), device=self.device))
                except RuntimeError:
                    out.append(None)
            return out

    def __call__(self, items: list, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = [k for k, it in enumerate(items) if it[0].ndim == 1]
        images: list = [None] * len(items)
        for k, img in zip(enc, self._decode([items[k][0] for k in enc])):
            images[k] = img
        for k, it in enumerate(items):
            if it[0].ndim == 3:  # decoded on the CPU by a worker (non-JPEG), already the right size
                images[k] = it[0].to(self.device, non_blocking=True).unsqueeze(0)
            elif images[k] is None:
                images[k] = self._cpu_retry(it[2])
        keep = [k for k, img in enumerate(images) if img is not None]
        by_shape: dict[tuple, list[int]] = {}
        for k in keep:
            img = images[k] if images[k].ndim == 4 else images[k].unsqueeze(0)
            images[k] = img
            by_shape.setdefault(tuple(img.shape[-3:]), []).append(k)
        for ks in by_shape.values():  # one resize per distinct input size (usually one)
            resized = self._resize(torch.cat([images[k] for k in ks]))
            for j, k in enumerate(ks):
                images[k] = resized[j:j + 1]
        if not keep:
            s = self.files.size
            return (torch.empty(0, self.files.channels, s, s, dtype=torch.uint8, device=self.device),
                    labels[:0].to(self.device))
        x = torch.cat([images[k] for k in keep])
        return x, labels[keep].to(self.device, non_blocking=True)

    def _cpu_retry(self, index: int):
        item = self.files[index]  # PIL; raises DatasetError with on_corrupt=fail, None with skip
        return None if item is None else item[0].to(self.device).unsqueeze(0)


class DecodingLoader:
    """Wraps a DataLoader of encoded items: yields (uint8 batch on the device, labels on the device)."""

    def __init__(self, loader, decoder: DeviceDecoder):
        self.loader, self.decoder = loader, decoder

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for items, labels in self.loader:
            yield self.decoder(items, labels)


def decoding_loader(files, batch_sampler, num_workers: int, pin_memory: bool, device) -> DecodingLoader:
    """The training loader for ``decode: gpu``: workers read bytes, the device decodes batches."""
    from torch.utils.data import DataLoader

    if not hasattr(files, "paths"):
        raise ConfigError("data.decode gpu needs an image folder (files to decode)", "data.decode", "use auto or cpu")
    generator = torch.Generator()
    generator.manual_seed(getattr(batch_sampler, "seed", 0) + getattr(batch_sampler, "epoch", 0))
    loader = DataLoader(EncodedImageSet(files), batch_sampler=batch_sampler, num_workers=num_workers,
                        collate_fn=collate_encoded, generator=generator, pin_memory=False,
                        prefetch_factor=4 if num_workers > 0 else None)
    return DecodingLoader(loader, DeviceDecoder(files, device))




def train_loader(files, batch_sampler, data_cfg, device, pin_memory: bool):
    """(the training loader, 'cpu' | 'gpu'): the Trainer's and the benchmark's one choice of pipeline."""
    from .loaders import make_loader

    decode = resolve_decode(data_cfg, device, getattr(files, "paths", None))
    if decode == "gpu":
        return decoding_loader(files, batch_sampler, data_cfg.num_workers, pin_memory, device), "gpu"
    return make_loader(files, batch_sampler, data_cfg.num_workers, pin_memory), "cpu"


__all__ = ["DECODE_MODES", "DecodingLoader", "DeviceDecoder", "EncodedImageSet", "decoding_loader", "resolve_decode",
           "train_loader"]
