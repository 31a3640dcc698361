"""The entry of a training job, whoever launched it (bench and predict jobs share its `bootstrap`).

load config -> detect the World (env/) -> pick the device -> join the process group
(dist/) -> run directory -> resume? -> fit (train/) -> summary. Under torchrun, srun,
submitit or horovodrun only the World differs.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import threading
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from .config import JobConfig, from_dict
from .errors import EXIT_PREEMPTED, DistributedError, HpcnnError
from .files import new_run_dir
from .rundir import write_config

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


def bootstrap(cfg: JobConfig | None = None, world=None, log_to_stderr: bool = False, timeout_s: float | None = None):
    """The start of every job process (train, bench, predict): World -> logging -> device -> Comm.

    Returns (world, device, comm). Without ``cfg`` (predict's group of CPU processes): the CPU, backend auto.
    ``log_to_stderr``: keep stdout for a result (``hpcnn bench | jq``).
    """
    import torch

    from .dist import choose_device, make_comm
    from .env import detect_world
    from .train.logs import setup_logging

    world = world or detect_world()
    handlers = setup_logging(world.rank).handlers
    for handler in handlers if log_to_stderr else ():
        handler.setStream(sys.stderr)
    if cfg is None:
        return world, torch.device("cpu"), make_comm(world, "auto", torch.device("cpu"), timeout_s or 3600.0)
    device = choose_device(cfg.train.device, world.local_rank, strict=True)
    if device.type == "cuda":
        from .env import validate_against_request

        for warning in validate_against_request(world, gpus_visible=torch.cuda.device_count()):
            if world.rank == 0:
                log.warning(warning)
    _set_threads(cfg, world, device)
    _deterministic(cfg, device)
    return world, device, make_comm(world, cfg.dist.backend, device, timeout_s or cfg.dist.timeout_s)


def run_job(cfg: JobConfig, run_dir: str | Path | None = None, resume: str | None = None,
            world=None, callbacks=()) -> RunResult:
    """Train ``cfg`` in this process; ``resume="auto"`` continues from the newest checkpoint in run_dir.

    ``callbacks``: extra ``hpcnn.train.events.Callback`` objects (every rank gets every event).
    """
    from .data import jobscope as data_job
    from .env import job_info
    from .objectives import objective_for
    from .rundir_lock import hold_run_dir
    from .train.trainer import Trainer

    if not resume:  # a bad model.weights fails before a run directory exists (a resumed run loads its checkpoint)
        from .config.weights_names import weights_source

        weights_source(cfg.model)
    stop = StopFlag()
    stop.install()
    world, device, comm = bootstrap(cfg, world)
    held = ExitStack()  # rank 0's lock of the run directory, released however the run ends
    created = started = False
    try:
        if comm.is_main:
            log.info("hpcnn: %s; backend %s; device %s", world.describe(), comm.backend, device)
        run_dir = Path(run_dir) if run_dir else comm.broadcast_object(
            new_run_dir(cfg.train.runs_dir, cfg.name) if comm.is_main else None)
        if comm.is_main:
            created = not run_dir.exists()
            run_dir.mkdir(parents=True, exist_ok=True)
            held.enter_context(hold_run_dir(run_dir, job_info()))  # a second job here stops: RunDirBusy
            write_config(run_dir, cfg)
        comm.barrier()
        with data_job.bound(comm, run_dir):  # set-up lists a folder on one rank, holds sets once per node
            trainer = Trainer(cfg, comm, run_dir, device, stop=stop, callbacks=callbacks, resume=resume,
                              job=job_info(), objective=objective_for(cfg))
        started = True
        result = trainer.fit()
        comm.barrier()
    except HpcnnError as err:
        if hasattr(comm, "fail"):
            comm.fail(f"{type(err).__name__}: {err}")
        raise
    except Exception as err:
        if hasattr(comm, "diagnose"):  # a collective failed: name the peer that died, not gloo's socket error
            if cause := comm.diagnose():
                raise DistributedError(f"{cause} — stopping rank {world.rank} on {world.hostname}",
                                       f"run {run_dir}", "read that rank's own log for the reason; the newest "
                                       "checkpoint is intact: resume with --resume") from err
            comm.fail(f"{type(err).__name__}: {err}")
        raise
    finally:
        held.close()
        if created and not started:  # set-up failed (data, model): no run to resume, leave no empty directory
            shutil.rmtree(run_dir, ignore_errors=True)
    comm.shutdown()
    if comm.is_main:
        log.info("run directory: %s", run_dir)
    return RunResult(result.status, run_dir, result.summary)


def run_from_dict(config: dict, run_dir: str | Path, resume: str = "auto") -> RunResult:
    """For payloads that carry the config as plain data (Slurm, submitit)."""
    return run_job(from_dict(config, "submitted config"), run_dir, resume)


__all__ = ["EXIT_PREEMPTED", "HpcnnError", "RunResult", "StopFlag", "run_job"]
