"""The one entry every job executes, whoever launched it.

load config -> detect the World (env/) -> pick the device -> join the process group
(dist/) -> run directory -> resume? -> fit (train/) -> summary. Under torchrun, srun,
submitit or horovodrun only the World differs.
"""
from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .config import JobConfig, dump_yaml, from_dict, read_yaml
from .errors import CheckpointError, ConfigError, DistributedError, HpcnnError

log = logging.getLogger("hpcnn")

EXIT_PREEMPTED = 3
STOP_SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")


@dataclass
class RunResult:
    status: str
    run_dir: Path
    summary: dict


class StopFlag:
    """Set by a preemption/timeout signal; the trainer checkpoints at the next step boundary."""

    def __init__(self):
        self.signal_name: str | None = None

    def __call__(self) -> bool:
        return self.signal_name is not None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in STOP_SIGNALS:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal_name = signal.Signals(signum).name
        log.warning("received %s: will checkpoint at the next step boundary and stop", self.signal_name)


def new_run_dir(cfg: JobConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cfg.name)[:60] or "run"
    return Path(cfg.train.runs_dir) / f"{safe}-{stamp}-{secrets.token_hex(2)}"


def config_for_resume(run_dir: Path, overrides=()) -> JobConfig:
    """The config a run directory was started with, plus any overrides (e.g. more epochs)."""
    from .config import apply_overrides

    path = Path(run_dir) / "config.resolved.yaml"
    if not path.is_file():
        raise CheckpointError("not a run directory (no config.resolved.yaml)", str(run_dir),
                              "pass the directory printed at the end of a run")
    data = read_yaml(path)
    if overrides:
        data = apply_overrides(data, overrides)
    return from_dict(data, str(path) + (" + command-line overrides" if overrides else ""))


def pick_device(cfg: JobConfig, world):
    import torch

    want = cfg.train.device
    has_cuda = torch.cuda.is_available()
    if want == "cuda" and not has_cuda:
        raise ConfigError("train.device is cuda but no GPU is visible", "train.device",
                          "request GPUs from Slurm (slurm.gpus_per_node) or use device: auto")
    if want == "cpu" or not has_cuda:
        return torch.device("cpu")
    count = torch.cuda.device_count()
    device = torch.device("cuda", world.local_rank % count)
    torch.cuda.set_device(device)
    return device


def _set_threads(cfg: JobConfig, world, device) -> None:
    import torch

    threads = cfg.train.threads
    if not threads and device.type == "cpu" and world.local_world_size > 1:
        threads = max(1, (os.cpu_count() or 1) // world.local_world_size)  # no oversubscription
    if threads:
        torch.set_num_threads(threads)


def _deterministic(cfg: JobConfig, device) -> None:
    import torch

    if cfg.train.deterministic:
        if device.type == "cuda":
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _gpu_sampler(cfg: JobConfig, world, device, run_dir: Path):
    """Every rank samples the GPU it trains on (a no-op on CPU or without a driver)."""
    import contextlib

    if not cfg.monitor.enabled or device.type != "cuda":
        return contextlib.nullcontext()
    from .monitor import GpuSampler

    (run_dir / "gpu").mkdir(exist_ok=True)
    return GpuSampler(run_dir / "gpu" / f"rank{world.rank}.jsonl", cfg.monitor.interval_s,
                      cuda_ordinal=device.index or 0)


def _add_gpu_summary(run_dir: Path, summary: dict) -> None:
    from .monitor import summarize
    from .train.summary import write_summary

    images = round(summary.get("images_per_second", 0) * summary.get("train_seconds", 0)) or None
    gpu = summarize(run_dir, images)
    if gpu is None:
        return
    summary["gpu"] = gpu
    write_summary(run_dir, summary)
    log.info("GPU: %d device(s), mean utilisation %s%%, max memory %s MiB, energy %.0f J (%s J/image)",
             gpu["gpus"], _fmt(gpu["util_mean_percent"]), _fmt(gpu["mem_max_mib"]), gpu["energy_j"],
             _fmt(gpu["energy_per_image_j"], 4))
    for note in gpu["notes"]:
        log.warning("GPU note: %s", note)


def _fmt(value, digits: int = 0) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run_job(cfg: JobConfig, run_dir: str | Path | None = None, resume: str | None = None,
            world=None) -> RunResult:
    """Train ``cfg`` in this process; ``resume="auto"`` continues from the newest checkpoint in run_dir."""
    from .dist import make_comm
    from .train import checkpoint as ckpt
    from .train.fit import fit
    from .train.logs import setup_logging

    if world is None:
        from .env import detect_world

        world = detect_world()
    setup_logging(world.rank)
    device = pick_device(cfg, world)
    if device.type == "cuda":
        import torch

        from .env import validate_against_request

        for warning in validate_against_request(world, gpus_visible=torch.cuda.device_count()):
            if world.rank == 0:
                log.warning(warning)
    _set_threads(cfg, world, device)
    _deterministic(cfg, device)
    stop = StopFlag()
    stop.install()
    comm = make_comm(world, cfg.dist.backend, device, cfg.dist.timeout_s)
    try:
        if comm.is_main:
            log.info("hpcnn: %s; backend %s; device %s", world.describe(), comm.backend, device)
        run_dir = Path(run_dir) if run_dir else comm.broadcast_object(new_run_dir(cfg) if comm.is_main else None)
        if comm.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.resolved.yaml").write_text(dump_yaml(cfg))
        comm.barrier()
        state = None
        if resume:
            found = ckpt.load_latest(run_dir / "checkpoints")
            if found is None and resume != "auto":
                raise CheckpointError("no checkpoint to resume from", str(run_dir / "checkpoints"))
            if found is not None:
                state, path = found
                if comm.is_main:
                    log.info("resuming from %s", path)
        with _gpu_sampler(cfg, world, device, run_dir):
            result = fit(cfg, world, comm, run_dir, device, stop=stop, resume_state=state)
        comm.barrier()
        if comm.is_main:
            _add_gpu_summary(run_dir, result.summary)
    except HpcnnError as err:
        if hasattr(comm, "fail"):
            comm.fail(f"{type(err).__name__}: {err}")
        raise
    except Exception as err:
        if hasattr(comm, "diagnose"):  # a collective failed: name the peer that died, not gloo's socket error
            cause = comm.diagnose()
            if cause:
                raise DistributedError(f"{cause} — stopping rank {world.rank} on {world.hostname}",
                                       f"run {run_dir}", "read that rank's own log for the reason; the newest "
                                       "checkpoint is intact: resume with --resume") from err
            comm.fail(f"{type(err).__name__}: {err}")
        raise
    comm.shutdown()
    if comm.is_main:
        log.info("run directory: %s", run_dir)
    return RunResult(result.status, run_dir, result.summary)


def run_from_dict(config: dict, run_dir: str | Path, resume: str = "auto") -> RunResult:
    """For payloads that carry the config as plain data (Slurm, submitit)."""
    return run_job(from_dict(config, "submitted config"), run_dir, resume)


__all__ = ["EXIT_PREEMPTED", "HpcnnError", "RunResult", "StopFlag", "config_for_resume", "new_run_dir", "run_job"]
