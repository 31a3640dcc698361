"""The one entry every job executes, whoever launched it.

load config -> detect the World (env/) -> pick the device -> join the process group
(dist/) -> run directory -> resume? -> fit (train/) -> summary. Under torchrun, srun,
submitit or horovodrun only the World differs.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from .config import JobConfig, dump_yaml, from_dict, read_yaml
from .errors import EXIT_PREEMPTED, CheckpointError, ConfigError, DistributedError, HpcnnError
from .files import atomic_write_text, new_run_dir

log = logging.getLogger("hpcnn")

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


def run_job(cfg: JobConfig, run_dir: str | Path | None = None, resume: str | None = None,
            world=None, callbacks=()) -> RunResult:
    """Train ``cfg`` in this process; ``resume="auto"`` continues from the newest checkpoint in run_dir.

    ``callbacks``: extra ``hpcnn.train.events.Callback`` objects (every rank gets every event).
    """
    from .dist import make_comm
    from .env import job_info
    from .train.logs import setup_logging
    from .train.trainer import Trainer

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
        run_dir = Path(run_dir) if run_dir else comm.broadcast_object(
            new_run_dir(cfg.train.runs_dir, cfg.name) if comm.is_main else None)
        if comm.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(run_dir / "config.resolved.yaml", dump_yaml(cfg))
        comm.barrier()
        if cfg.ssl.method != "none":  # self-supervised pretraining: the same set-up, fit() and results
            from .ssl.pretrain import Pretrainer as Trainer
        trainer = Trainer(cfg, comm, run_dir, device, stop=stop, callbacks=callbacks, resume=resume, job=job_info())
        result = trainer.fit()
        comm.barrier()
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


__all__ = ["EXIT_PREEMPTED", "HpcnnError", "RunResult", "StopFlag", "config_for_resume", "run_job"]
