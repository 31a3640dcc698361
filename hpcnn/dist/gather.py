"""A differentiable all-gather over the Comm, for losses that compare samples across ranks.

Contrastive losses (SimCLR's NT-Xent) use every other sample of the *global* batch as a
negative, so each rank needs all ranks' embeddings, and the gradient has to flow back to
the rank that computed each embedding. With ``L = mean over ranks r of L_r`` (what DDP's
gradient averaging optimises), the gradient reaching rank s's embeddings is
``sum over r of dL_r/dz_s``: the backward all-reduces (sums) the incoming gradient of the
gathered tensor and keeps this rank's slice. DDP then divides by the number of ranks, so
N ranks with batch B/N each get the gradients of one rank with batch B.

``torch.distributed.nn.functional.all_gather`` does the same, but its backward has changed
between torch releases; this one is small enough to read and is tested against one process.
"""
from __future__ import annotations

import torch


class _Collectives:
    """gather (rank-major concatenation along dim 0) and sum (all-reduce) for one Comm."""

    def __init__(self, comm):
        self.comm = comm
        self.rank, self.world_size = comm.rank, comm.world_size

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        if self.comm.backend == "horovod":
            return self.comm._hvd.allgather(x, name="hpcnn.all_gather_grad")
        import torch.distributed as dist

        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x)
        return torch.cat(parts)

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        if self.comm.backend == "horovod":
            hvd = self.comm._hvd
            return hvd.allreduce(x, op=hvd.Sum, name="hpcnn.all_gather_grad.backward")
        import torch.distributed as dist

        dist.all_reduce(x)
        return x


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, ops: _Collectives) -> torch.Tensor:
        ctx.ops, ctx.n = ops, x.shape[0]
        return ops.gather(x.contiguous())

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        total = ctx.ops.sum(grad.contiguous().clone())
        lo = ctx.ops.rank * ctx.n
        return total[lo:lo + ctx.n], None


def all_gather_grad(x: torch.Tensor, comm) -> torch.Tensor:
    """Every rank's ``x`` concatenated along dim 0 in rank order, with gradients to each owner.

    Every rank must pass a tensor of the same shape. One process (``SingleComm``): ``x`` itself.
    """
    if comm is None or comm.world_size == 1:
        return x
    return _AllGather.apply(x, _Collectives(comm))


__all__ = ["all_gather_grad"]
