"""A trained run applied to images, with exactly the run's evaluation preprocessing.

The preprocessing is read back, never retyped: checkpoints written by the Trainer carry it
(``preprocess``: image size, channels, centre crop, mean/std); for older runs it is recomputed
from the run's own config. Files are decoded by the same code the trainer uses
(``FileImageSet.load``); HDF5 rows (``file.h5[17]``) are read a batch at a time and resized like
the trainer's HDF5 source. An unreadable input is a row with an error, never the end of the job.

Rows stream to disk as they are predicted (memory does not grow with the number of inputs).
Under torchrun/srun each rank predicts a contiguous shard into a part file next to the output;
rank 0 merges the parts in input order. On a GPU, ``precision="bf16"`` (autocast),
``channels_last`` and ``compile`` (``torch.compile``) make it faster; fp32 is the default and
reproduces the trainer's evaluation.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from ..data.augment import Normalize, model_input
from ..data.imagesets import FileImageSet, resize_uint8, to_channels
from ..dist.device import choose_device
from ..errors import CheckpointError, ConfigError
from ..files import atomic_write
from ..models.registry import build_model
from ..progress import Progress
from ..regular_files import require_regular
from ..train import checkpoint as ckpt
from . import outputs
from .labelled import LabelTally
from .labelled import describe as describe_labelled
from .listing import HDF5_DATASET, EntryList, hdf5_row
from .manifest import bounds, checkpoint_path

log = logging.getLogger("hpcnn.predict")
PRECISIONS = ("fp32", "bf16")


@dataclass
class Predictor:
    model: torch.nn.Module
    classes: list
    preprocess: dict
    device: torch.device
    source: Path
    precision: str = "fp32"
    channels_last: bool = False
    compiled: bool = False

    def normalize(self) -> Normalize:
        return Normalize(torch.tensor(self.preprocess["mean"]), torch.tensor(self.preprocess["std"])).to(self.device)

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor, normalize: Normalize | None = None) -> torch.Tensor:
        """uint8 (B,C,H,W) images -> float32 class probabilities, on the predictor's device."""
        x = model_input(images, normalize or self.normalize(), self.device, self.channels_last, non_blocking=True)
        with self.autocast():
            logits = self.model(x)
        return torch.softmax(logits.float(), dim=1)


def load_predictor(run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu",
                   precision: str = "fp32", channels_last: bool = False, compile: bool = False) -> Predictor:
    from ..rundir import config_for_resume, read_summary

    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}", "--precision")
    run_dir = Path(run_dir)
    cfg = config_for_resume(run_dir)
    path = checkpoint_path(run_dir, checkpoint)
    state = ckpt.load_file(path)
    classes = state.get("classes") or (read_summary(run_dir) or {}).get("classes")
    if not classes:
        raise CheckpointError("the run records no class names", str(run_dir), "was it trained by hpcnn?")
    pre = state.get("preprocess")
    if not pre:  # a checkpoint that predates the stored preprocessing: recompute it from the run's config
        from ..train.inputs import input_data, job_inputs, preprocessing

        pre = preprocessing(input_data(cfg), job_inputs(cfg, announce=False)[1])
    model, _ = build_model(dataclasses.replace(cfg.model, weights=None), len(classes), pre["channels"],
                           pre["image_size"])
    model.load_state_dict(state["model"])
    device = choose_device(device)
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model = torch.compile(model)
    return Predictor(model, list(classes), pre, device, path, precision, channels_last, compile)


def _error_text(err: BaseException) -> str:
    text = str(err).splitlines()[0][:200] if str(err) else ""
    return f"{type(err).__name__}: {text}"


class _Inputs(Dataset):
    """(image or zeros, index, error) per entry: decoding failures are data, not exceptions.

    Files are decoded one by one; HDF5 rows of a batch are read with one slice per file, from a
    handle each worker process opens for itself.
    """

    def __init__(self, entries: Sequence[str], pre: dict):
        self.entries, self.pre = entries, pre
        # the trainer's decoder, reading its paths straight from the entries (no copy, no labels)
        self.images = FileImageSet([], [], pre["image_size"], pre["channels"], "fail", pre["center_crop"])
        self.images.paths = entries
        self.blank = torch.zeros(pre["channels"], pre["image_size"], pre["image_size"], dtype=torch.uint8)
        self._h5, self._pid = {}, None  # HDF5 data sets by path, opened by the process _pid

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def _file(self, i: int):
        try:
            require_regular(self.entries[i])  # a FIFO would block the open forever: an error row instead
            return self.images.load(i), i, ""
        except Exception as err:  # PIL raises many types: corrupt, truncated, not an image, gone
            return self.blank, i, _error_text(err)

    def _dataset(self, path: str):
        if self._pid != os.getpid():  # a forked worker opens its own handles
            self._h5, self._pid = {}, os.getpid()
        if path not in self._h5:
            import h5py

            self._h5[path] = h5py.File(path, "r")[HDF5_DATASET]
        return self._h5[path]

    def _hdf5(self, path: str, items: list[tuple[int, int, int]], out: list) -> None:
        """items: (position in the batch, entry index, row in the file)."""
        try:
            data = self._dataset(path)
            good = sorted({row for _, _, row in items if row < data.shape[0]})
            pick, x = {}, None
            if good:
                span = good[-1] + 1 - good[0]
                contiguous = span <= 4 * len(good)   # one slice, else h5py's sorted point selection
                block = data[good[0]:good[-1] + 1] if contiguous else data[good]
                if block.dtype != "uint8":
                    raise TypeError(f"'{HDF5_DATASET}' must hold uint8 pixels, not {block.dtype}")
                pick = {r: (r - good[0] if contiguous else k) for k, r in enumerate(good)}
                x = torch.from_numpy(block)
                x = (x.unsqueeze(-1) if x.ndim == 3 else x).permute(0, 3, 1, 2).contiguous()
                x = to_channels(resize_uint8(x, self.pre["image_size"], self.pre["center_crop"]), self.pre["channels"])
        except Exception as err:  # not an HDF5 file, no 'images', wrong dtype
            for pos, i, _ in items:
                out[pos] = (self.blank, i, _error_text(err))
            return
        for pos, i, row in items:
            if row in pick:
                out[pos] = (x[pick[row]], i, "")
            else:
                out[pos] = (self.blank, i, f"IndexError: row {row} is past the end of {path} ({data.shape[0]} images)")

    def __getitems__(self, idx: Sequence[int]) -> list:
        out: list = [None] * len(idx)
        tables: dict[str, list] = {}
        for pos, i in enumerate(idx):
            ref = hdf5_row(self.entries[i])
            if ref is None:
                out[pos] = self._file(i)
            else:
                tables.setdefault(ref[0], []).append((pos, i, ref[1]))
        for path, items in tables.items():
            self._hdf5(path, items, out)
        return out


def _collate(items):
    images, index, errors = zip(*items)
    return torch.stack(images), list(index), list(errors)


def progress_for(total: int, enabled: bool, every_s: float = 30.0, every_batches: int = 0) -> Progress:
    """A bar on a terminal; otherwise a timestamped line every ``every_s`` seconds or ``every_batches``."""
    return Progress(enabled, total, what="predicted", unit="img", every_s=every_s, every_batches=every_batches,
                    log=log)


@torch.no_grad()
def predict_rows(p: Predictor, entries: Sequence[str], topk: int = 3, batch: int = 256, workers: int = 0,
                 progress: Progress | None = None) -> Iterator[list[list]]:
    """Rows of predictions (``path, class1, prob1, ..., error``), one list per batch, in input order."""
    normalize = p.normalize()
    dataset = _Inputs(entries, p.preprocess)
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, collate_fn=_collate,
                        pin_memory=p.device.type == "cuda")
    for images, index, errors in loader:
        probs = p.probabilities(images, normalize).cpu()
        top = probs.topk(min(topk, probs.shape[1]), dim=1)
        rows = []
        for j, i in enumerate(index):  # an unreadable input: empty class/prob cells, then its error
            pairs = [v for c, pr in zip(top.indices[j].tolist(), top.values[j].tolist())
                     for v in (("", "") if errors[j] else (p.classes[c], f"{pr:.9g}"))]
            rows.append([entries[i], *pairs, errors[j]])
        if progress:
            progress.update(len(rows))
        yield rows


def predict_csv(p: Predictor, entries: Sequence[str], out: str | Path, topk: int = 3, batch: int = 256,
                workers: int = 0, progress: Progress | None = None, tally: LabelTally | None = None) -> int:
    """Predict ``entries`` into one CSV file, atomically: a reader sees all of it or nothing. Returns how many
    rows had errors."""
    errors = 0

    def write(f: IO[bytes]) -> None:
        nonlocal errors
        writer = outputs.CsvRows(f, min(topk, len(p.classes)))
        for rows in predict_rows(p, entries, topk, batch, workers, progress):
            writer.write(rows)
            errors += sum(1 for r in rows if r[-1])
            if tally is not None:
                tally.add(rows)
        writer.close()

    atomic_write(out, write)
    return errors


def _part(out: Path, rank: int, world: int) -> Path:
    return out.with_name(f".{out.name}.part-{rank:05d}-of-{world:05d}.csv")


def predict_files(predictor: Predictor, paths, out: str | Path, topk: int = 3, batch: int = 256, workers: int = 0,
                  comm=None, progress: bool = True, log_every_s: float = 30.0, log_every_batches: int = 0) -> dict:
    """Predict ``paths`` (this rank: its contiguous shard) into ``out`` (CSV or .parquet), in input order."""
    from ..dist import SingleComm

    comm = comm or SingleComm()
    out = Path(out)
    outputs.check_output(out)
    paths = paths if isinstance(paths, (EntryList, list)) else EntryList.write(paths)  # 8 bytes per input held
    lo, hi = bounds(len(paths), comm.world_size, comm.rank)
    bar = progress_for(hi - lo, comm.is_main and progress, log_every_s, log_every_batches)
    t0 = time.perf_counter()
    direct = comm.world_size == 1 and not outputs.is_parquet(out)
    target = out if direct else _part(out, comm.rank, comm.world_size)
    tally = LabelTally(predictor.classes)  # inputs in folders named after classes: accuracy too
    try:
        errors = predict_csv(predictor, paths[lo:hi], target, topk, batch, workers, bar, tally)
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    gathered = comm.all_gather_object((errors, tally.state()))  # also waits for every rank's part to be on disk
    errors = sum(g[0] for g in gathered)
    tally = LabelTally(predictor.classes)
    tally.merge(g[1] for g in gathered)
    if not direct and comm.is_main:
        parts = [_part(out, r, comm.world_size) for r in range(comm.world_size)]
        outputs.merge(parts, out, min(topk, len(predictor.classes)))
        for part in parts:
            part.unlink(missing_ok=True)
    result = {"inputs": len(paths), "errors": errors, "seconds": seconds,
              "images_per_second": len(paths) / max(seconds, 1e-9), "out": str(out),
              "checkpoint": str(predictor.source), "device": str(predictor.device), "precision": predictor.precision,
              "channels_last": predictor.channels_last, "compiled": predictor.compiled, "host": socket.gethostname(),
              "labelled": tally.summary()}
    if comm.is_main:
        log.info("predicted %d inputs (%d unreadable) in %.1f s: %.0f img/s -> %s", len(paths), errors, seconds,
                 result["images_per_second"], out)
        if result["labelled"]:
            log.info("%s", describe_labelled(result["labelled"]))
    return result


__all__ = ["PRECISIONS", "Predictor", "load_predictor", "predict_csv", "predict_files", "predict_rows",
           "progress_for"]
