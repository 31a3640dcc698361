"""torch.distributed (DDP) over NCCL or gloo, with a watchdog that ends the job when a rank dies."""
from __future__ import annotations

import datetime
import os
import uuid

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError, WorldError
from .comm import Comm
from .watchdog import Watchdog


class TorchComm(Comm):
    def __init__(self, world, backend: str, device: torch.device, timeout_s: float):
        self.rank, self.world_size, self.local_rank = world.rank, world.world_size, world.local_rank
        self.backend = backend
        self.device = device
        if backend == "nccl" and device.type != "cuda":
            raise WorldError("dist.backend nccl needs GPUs but this process has none", f"rank {world.rank}",
                             "use dist.backend: gloo (or auto) on CPU nodes")
        # Errors and hangs surface within the timeout, not NCCL's 30-minute default.
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
        # torchrun: reuse its rendezvous store
        init_method = "env://" if world.launcher == "torchrun" else f"tcp://{world.master_addr}:{world.master_port}"
        try:
            dist.init_process_group(backend, init_method=init_method, rank=world.rank,
                                    world_size=world.world_size, timeout=datetime.timedelta(seconds=timeout_s),
                                    device_id=device if device.type == "cuda" else None)
        except Exception as err:
            raise WorldError(f"rank {world.rank} could not join the process group at "
                             f"{world.master_addr}:{world.master_port} within {timeout_s:.0f} s: {err}",
                             world.describe(),
                             "all ranks must agree on MASTER_ADDR/MASTER_PORT; launch with srun or torchrun") from None
        prefix = "hpcnn/" + self.broadcast_object(uuid.uuid4().hex)
        self.watchdog = Watchdog(world, timeout_s, prefix)
        self.watchdog.start()

    def wrap_model(self, model, device, sync_batchnorm, find_unused_parameters):
        if sync_batchnorm:
            if device.type != "cuda":
                raise ConfigError("dist.sync_batchnorm needs GPUs: torch's SyncBatchNorm has no CPU implementation",
                                  "dist.sync_batchnorm", "set it to false on CPU (or model.batch_norm: false)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [device.index] if device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                   find_unused_parameters=find_unused_parameters)

    def no_sync(self, model):
        return model.no_sync()

    def _tensor(self, value: float) -> torch.Tensor:
        return torch.tensor([float(value)], dtype=torch.float64,
                            device=self.device if self.backend == "nccl" else "cpu")

    def any(self, flag: bool) -> bool:
        t = self._tensor(1.0 if flag else 0.0)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, value: float) -> float:
        t = self._tensor(value)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def all_gather_object(self, obj) -> list:
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()

    def fail(self, reason: str) -> None:
        self.watchdog.report_failure(reason)

    def diagnose(self) -> str | None:
        return self.watchdog.diagnose()

    def shutdown(self) -> None:
        self.watchdog.stop()
        if dist.is_initialized():
            try:
                dist.barrier()
            finally:
                dist.destroy_process_group()
