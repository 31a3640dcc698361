"""hpcnn's Trainer vs a bare PyTorch loop doing exactly the same work, in one process, alternating.

    .venv/bin/python benchmarks/bench_trainer_overhead.py [--cases cpu] [--rounds 20] [--steps 5] [--out F]
    .venv/bin/python benchmarks/bench_trainer_overhead.py --gpu --out gpu_out/trainer_overhead.json

Same model object copied (identical weights, memory format), same batch (one uint8 batch already
on the device, normalised the same way), same precision (autocast), same optimizer class,
hyper-parameters and parameter groups (decay / no decay), ``torch.compile`` on both or neither.
The hpcnn side is a real ``Trainer`` with its default callbacks (progress line, TensorBoard
scalars, GPU telemetry) running its epoch method (``_train_one_epoch``: LR schedule per step,
device-side loss accumulation, log points with the stop check and event dispatch, the Comm's
optimizer step); the bare side is the textbook loop. A round times
``--steps`` steps of each, in alternating order (ABBA), after warm-up rounds; the ratio of a
round is bare time / hpcnn time (1.0 = no overhead, higher = hpcnn faster), and the JSON
reports the median ratio over rounds with the images/s of each side. The clock is wall time on a
GPU and the process's CPU time on the CPU (``clock``): on a shared CPU machine, wall time measures
the other tenants as much as the work; the wall-clock ratio is reported too (``ratio_wall_median``).

Cases: ``cpu`` (the default CNN, 64², batch 128, AdamW, CPU), and where CUDA exists ``resnet50``
(224², batch 256, bf16, channels_last, SGD), ``resnet18_32`` (32², batch 512, bf16, channels_last,
SGD), ``resnet18_32_compiled``; GPU cases are reported as skipped without CUDA.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from emit import emit  # benchmarks/emit.py: the script's own folder is on sys.path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from hpcnn.config import load_job  # noqa: E402
from hpcnn.dist.comm import SingleComm  # noqa: E402
from hpcnn.run import _deterministic  # noqa: E402
from hpcnn.train.events import Position  # noqa: E402
from hpcnn.train.trainer import Trainer  # noqa: E402

COMMON = ["train.plots=false", "data.n_test=0", "data.n_val=8", "schedule.warmup_epochs=0"]
CASES = {
    "cpu": {"cuda": False, "target": 0.99, "overrides": ["train.device=cpu"]},
    "resnet50": {"cuda": True, "target": 0.995, "overrides": [
        "model.name=resnet50", "data.image_size=224", "train.batch_size=256", "train.amp=bf16",
        "train.channels_last=true", "optim.name=sgd", "optim.weight_decay=0.0001", "train.deterministic=false"]},
    "resnet18_32": {"cuda": True, "target": 0.99, "overrides": [
        "model.name=resnet18", "data.image_size=32", "train.batch_size=512", "train.amp=bf16",
        "train.channels_last=true", "optim.name=sgd", "optim.weight_decay=0.0001", "train.deterministic=false"]},
    "resnet18_32_compiled": {"cuda": True, "target": 0.99, "overrides": [
        "model.name=resnet18", "data.image_size=32", "train.batch_size=512", "train.amp=bf16",
        "train.channels_last=true", "optim.name=sgd", "optim.weight_decay=0.0001", "train.deterministic=false",
        "train.compile=true"]},
}


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Repeat:
    """``n`` times the same on-device batch: what both loops consume."""

    def __init__(self, batch, n: int):
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            yield self.batch


def make_trainer(cfg, device, run_dir: Path, steps: int) -> Trainer:
    n = cfg.train.batch_size
    trainer = Trainer(cfg, SingleComm(), run_dir, device)
    trainer.steps_per_epoch = steps  # the schedule as in an epoch of `steps` steps
    trainer.ctx.steps_per_epoch = steps
    trainer.events.emit("on_run_start")
    trainer._enter_phase(trainer.phases[0])
    assert trainer.global_batch == n
    return trainer


def bare_loop(trainer, cfg, device):
    """The textbook loop over a copy of the Trainer's model; returns run(batch, steps)."""
    model = copy.deepcopy(trainer.raw_model)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    o = cfg.optim
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if o.name == "sgd":
        opt = torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)
    else:
        opt = torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas))
    net = torch.compile(model) if cfg.train.compile else model
    mean, std = trainer.normalize.mean, trainer.normalize.std
    amp = trainer.ctx.amp_dtype
    channels_last = cfg.train.channels_last

    def run(batch, steps: int) -> None:
        net.train()
        x8, y = batch
        for _ in range(steps):
            x = (x8.float().div_(255.0) - mean) / std
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        loss.item()  # the hpcnn epoch ends with one host sync too

    return run


def hpcnn_run(trainer):
    phase = trainer.phases[0]

    def run(batch, steps: int) -> None:
        trainer.phase_loader = Repeat(batch, steps)
        trainer.position = Position(0, 0, 0, 0)
        trainer._train_one_epoch(phase)

    return run


def timed(fn, batch, steps, device) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) of ``steps`` steps."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn(batch, steps)
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


def run_case(name: str, spec: dict, rounds: int, steps: int, warmup_rounds: int, root: Path) -> dict:
    if spec["cuda"] and not torch.cuda.is_available():
        return {"case": name, "skipped": "needs CUDA (no GPU visible)"}
    cfg = load_job(None, COMMON + spec["overrides"] + ["data.n_train=" + spec_batch(spec)])
    device = torch.device("cuda" if spec["cuda"] else "cpu")
    _deterministic(cfg, device)
    trainer = make_trainer(cfg, device, root / name, steps)
    g = torch.Generator(device=device)
    g.manual_seed(0)
    size, c, b = cfg.data.image_size, cfg.data.channels, cfg.train.batch_size
    batch = (torch.randint(0, 256, (b, c, size, size), dtype=torch.uint8, device=device, generator=g),
             torch.randint(0, len(trainer.classes), (b,), device=device, generator=g))
    sides = {"hpcnn": hpcnn_run(trainer), "bare": bare_loop(trainer, cfg, device)}
    for _ in range(warmup_rounds):  # compilation, cudnn autotuning, allocator warm-up
        for fn in sides.values():
            fn(batch, steps)
    wall = {"hpcnn": [], "bare": []}
    cpu = {"hpcnn": [], "bare": []}
    for r in range(rounds):
        order = ("hpcnn", "bare") if r % 2 == 0 else ("bare", "hpcnn")
        for side in order:
            w, c = timed(sides[side], batch, steps, device)
            wall[side].append(w)
            cpu[side].append(c)
    # GPU: wall time (the device is the machine's). CPU: the process's CPU time — on a shared machine wall
    # time measures the scheduler as much as the work; both ratios are reported.
    clock = "wall" if device.type == "cuda" else "process_cpu"
    times = wall if clock == "wall" else cpu
    ratios = [bt / ht for bt, ht in zip(times["bare"], times["hpcnn"])]
    wall_ratios = [bt / ht for bt, ht in zip(wall["bare"], wall["hpcnn"])]
    try:
        trainer.events.emit("on_run_end", {})
    except Exception:
        pass
    ratio = statistics.median(ratios)
    return {"case": name, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "model": cfg.model.name, "image_size": size, "batch": b, "precision": cfg.train.amp if spec["cuda"] else "fp32",
            "channels_last": cfg.train.channels_last, "compile": cfg.train.compile, "optimizer": cfg.optim.name,
            "rounds": rounds, "steps_per_round": steps, "clock": clock,
            "hpcnn_images_per_second": b * steps / statistics.median(wall["hpcnn"]),
            "bare_images_per_second": b * steps / statistics.median(wall["bare"]),
            "hpcnn_images_per_cpu_second": b * steps / statistics.median(cpu["hpcnn"]),
            "bare_images_per_cpu_second": b * steps / statistics.median(cpu["bare"]),
            "ratio_wall_median": statistics.median(wall_ratios),
            "ratio_median": ratio, "ratio_min": min(ratios), "ratio_max": max(ratios),
            "ratio_quartiles": statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else ratios,
            "target": spec["target"], "meets_target": ratio >= spec["target"]}


def spec_batch(spec: dict) -> str:
    for o in spec["overrides"]:
        if o.startswith("train.batch_size="):
            return o.split("=", 1)[1]
    return "128"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default=None, help=f"comma-separated, from {', '.join(CASES)} (default: cpu; --gpu: "
                   "the GPU cases)")
    p.add_argument("--gpu", action="store_true", help="the GPU cases (skipped without CUDA)")
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--steps", type=int, default=None, help="steps per side per round (default 5 CPU, 20 GPU)")
    p.add_argument("--warmup-rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.cases.split(",") if args.cases else ([n for n, s in CASES.items() if s["cuda"]] if args.gpu
                                                       else ["cpu"])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            steps = args.steps or (20 if CASES[name]["cuda"] else 5)
            results.append(run_case(name, CASES[name], args.rounds, steps, args.warmup_rounds, Path(tmp)))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    out = {"benchmark": "trainer_overhead", "torch": torch.__version__, "threads": torch.get_num_threads(),
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cases": results}
    emit(out, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
