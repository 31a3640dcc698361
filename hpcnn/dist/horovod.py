"""Horovod behind the Comm interface: an optional backend, imported only when a job asks for it.

Horovod 0.28.1 (the last release, 2023-06) is not a dependency: it has to be compiled against
the installed torch (scripts/build_horovod.sh). So nothing here imports it at module level, and
a missing or broken install surfaces as one ConfigError that says how to get it.

Differences from DDP the trainer must not notice:
* no model wrapper: rank 0's weights are broadcast once and ``hvd.DistributedOptimizer``
  averages gradients (asynchronous allreduce started by gradient hooks, awaited in ``step``);
* gradient accumulation is Horovod's ``backward_passes_per_step``, so ``no_sync`` only checks
  that the optimizer was told how many micro-batches make a step;
* after ``optimizer.load_state_dict`` (a resume) rank 0's optimizer state is broadcast.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..errors import ConfigError, WorldError
from .comm import Comm

INSTALL_HINT = ("build and install it into this venv with `bash scripts/build_horovod.sh` (about 6 minutes once, "
                "then cached), or `pip install 'hpcnn[horovod]'` where a Horovod wheel for your torch exists; on a "
                "cluster, `module load horovod` (or your site's Horovod module) in the profile's setup lines — "
                "or use dist.backend: auto")


def _import_horovod():
    """``horovod.torch``, or the ConfigError a user can act on."""
    try:
        import horovod.torch as hvd
    except ModuleNotFoundError as err:
        if (err.name or "").split(".")[0] != "horovod":
            raise ConfigError(f"dist.backend is horovod but Horovod cannot load a dependency: {err}",
                              "dist.backend", INSTALL_HINT) from None
        raise ConfigError("dist.backend is horovod but Horovod is not installed", "dist.backend",
                          INSTALL_HINT) from None
    except ImportError as err:  # typically built against another torch: undefined symbols
        raise ConfigError(f"dist.backend is horovod but Horovod's torch extension does not load: {err}",
                          "dist.backend", "rebuild it against the installed torch: bash scripts/build_horovod.sh "
                          "(HPCNN_HOROVOD_REBUILD=1 forces a fresh build)") from None
    return hvd


def check_available() -> None:
    """Pre-flight (e.g. on a login node): raise ConfigError unless ``horovod.torch`` loads; no init."""
    _import_horovod()


def convert_sync_batchnorm(module: nn.Module, sync_bn_class) -> nn.Module:
    """Replace every BatchNorm by ``sync_bn_class`` (hvd.SyncBatchNorm), keeping weights and statistics."""
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, sync_bn_class):
        new = sync_bn_class(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats)
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean = module.running_mean
            new.running_var = module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.train(module.training)
        return new
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, sync_bn_class))
    return module


def _accept_set_to_none(dist_opt, base_class) -> None:
    """Horovod 0.28's ``zero_grad()`` takes no ``set_to_none``; give it back, keeping Horovod's guard.

    Patched on the instance: Horovod's optimizer class calls ``super(self.__class__, self)``,
    which a subclass would turn into endless recursion.
    """
    horovod_zero_grad = dist_opt.zero_grad

    def zero_grad(set_to_none: bool = True) -> None:
        if dist_opt._handles:
            horovod_zero_grad()  # raises Horovod's "zero_grad() before step()" error
        base_class.zero_grad(dist_opt, set_to_none=set_to_none)

    dist_opt.zero_grad = zero_grad


class HorovodComm(Comm):
    """Collectives over Horovod (gloo here; MPI/NCCL wherever Horovod was built with them)."""

    backend = "horovod"

    def __init__(self, world, device: torch.device, accumulate: int = 1):
        self._hvd = hvd = _import_horovod()
        hvd.init()
        self.rank, self.world_size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()
        self.device = device
        self.accumulate = accumulate  # micro-batches per optimizer step; see wrap_optimizer
        self._deferred = 0  # no_sync passes since the last optimizer step
        ours = (self.rank, self.world_size, self.local_rank)
        theirs = (world.rank, world.world_size, world.local_rank)
        if ours != theirs:
            hvd.shutdown()
            raise WorldError(f"Horovod sees rank {ours[0]} of {ours[1]} (local {ours[2]}) but the launch environment "
                             f"says rank {theirs[0]} of {theirs[1]} (local {theirs[2]})", world.describe(),
                             "start Horovod jobs with `horovodrun -np N ... python -m hpcnn train ...` (or srun "
                             "with an MPI build of Horovod); under torchrun or plain srun use dist.backend: auto")
        if device.type == "cuda":
            expected = self.local_rank % torch.cuda.device_count()
            if device.index != expected:
                hvd.shutdown()
                raise WorldError(f"rank {self.rank} was given {device} but its local rank {self.local_rank} "
                                 f"maps to cuda:{expected}", world.describe())
            torch.cuda.set_device(device)

    # -- model and optimizer ------------------------------------------------------------------------
    def wrap_model(self, model: nn.Module, device: torch.device, sync_batchnorm: bool,
                   find_unused_parameters: bool) -> nn.Module:
        """Rank 0's weights and buffers everywhere; no wrapper (unused parameters need no flag here)."""
        if sync_batchnorm:
            if device.type != "cuda":
                raise ConfigError("dist.sync_batchnorm needs GPUs: Horovod's SyncBatchNorm has no CPU "
                                  "implementation", "dist.sync_batchnorm",
                                  "set it to false on CPU (or model.batch_norm: false)")
            model = convert_sync_batchnorm(model, self._hvd.SyncBatchNorm)
        self._hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        return model

    def wrap_optimizer(self, optimizer, model: nn.Module, accumulate: int | None = None):
        """``hvd.DistributedOptimizer`` that allreduces once every ``accumulate`` backward passes."""
        if accumulate is not None:
            self.accumulate = int(accumulate)
        dist_opt = self._hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters(),
                                                  backward_passes_per_step=self.accumulate)
        dist_opt.register_step_post_hook(self._after_step)
        dist_opt.register_load_state_dict_post_hook(self._after_load)
        _accept_set_to_none(dist_opt, type(optimizer))
        return dist_opt

    def _after_step(self, optimizer, args, kwargs) -> None:
        self._deferred = 0

    def _after_load(self, optimizer) -> None:
        """A resume loads the checkpoint on every rank; rank 0's copy is the one that counts."""
        self._deferred = 0
        # hvd.broadcast_optimizer_state takes a zero-gradient step to create a missing state, which
        # moves weights under weight decay: only broadcast a state rank 0 actually has.
        if self.broadcast_object(bool(optimizer.state_dict()["state"])):
            self._hvd.broadcast_optimizer_state(optimizer, root_rank=0)

    def no_sync(self, model: nn.Module):
        """Non-final micro-batch: Horovod itself defers the allreduce (backward_passes_per_step)."""
        self._deferred += 1
        if self._deferred >= self.accumulate:
            raise ConfigError(f"gradient accumulation over {self._deferred + 1} micro-batches, but Horovod's "
                              f"optimizer was wrapped for {self.accumulate} backward pass(es) per step",
                              "train.accumulate", "the trainer must pass accumulate=train.accumulate to "
                              "comm.wrap_optimizer; until it does, use train.accumulate: 1 with Horovod")
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def synchronized_step(self, optimizer):
        """Gradients averaged *before* the block (for clipping / unscaling), and step() not re-syncing."""
        optimizer.synchronize()
        self._deferred = 0
        with optimizer.skip_synchronize():
            yield

    # -- small collectives (epoch ends and log points only) ----------------------------------------
    def _allreduce(self, value: float, op) -> float:
        tensor = torch.tensor([float(value)], dtype=torch.float64)
        return float(self._hvd.allreduce(tensor, op=op).item())

    def any(self, flag: bool) -> bool:
        return self._allreduce(1.0 if flag else 0.0, self._hvd.Max) > 0

    def mean(self, value: float) -> float:
        return self._allreduce(value, self._hvd.Average)

    # Horovod matches ranks' operations by name, and these name them after type(obj) unless told:
    # rank 0 broadcasting a Path while the others pass None would wait forever.
    def all_gather_object(self, obj) -> list:
        return list(self._hvd.allgather_object(obj, name="hpcnn.all_gather_object"))

    def broadcast_object(self, obj):
        return self._hvd.broadcast_object(obj, root_rank=0, name="hpcnn.broadcast_object")

    def barrier(self) -> None:
        self._hvd.barrier()

    def shutdown(self) -> None:
        if self._hvd.is_initialized():
            self._hvd.shutdown()
