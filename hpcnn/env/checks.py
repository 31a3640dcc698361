"""Does the World fit the hardware and what the job asked for? (Fabric's validate_settings idea.)

Called once per rank after detect_world(), with plain numbers so it stays torch-free: the caller
passes ``gpus_visible`` (``torch.cuda.device_count()``) and, when it knows them, the request
(nodes, tasks per node, GPUs per node from the job's slurm section).

A launch that cannot work (two ranks on one GPU) raises WorldError with a hint. A launch that
works but wastes the allocation (idle GPUs, uneven tasks per node, a different node count than
requested) returns warnings for rank 0 to log: they are not worth killing a job over.
"""
from __future__ import annotations

from ..errors import WorldError
from .world import World


_PER_NODE_FLAG = {"torchrun": "torchrun --nproc_per_node={0}", "horovod": "horovodrun -H host1:{0},host2:{0},...",
                  "mpi": "mpirun --map-by ppr:{0}:node"}


def _per_node_flag(world: World, count: int) -> str:
    return _PER_NODE_FLAG.get(world.launcher, "srun --ntasks-per-node={0}").format(count)


def validate_against_request(world: World, *, gpus_visible: int | None = None, nodes: int | None = None,
                             tasks_per_node: int | None = None, gpus_per_node: int | None = None) -> list[str]:
    """Raise WorldError when ranks would share a GPU; return warnings for wasteful launches."""
    warnings: list[str] = []
    where = world.describe()
    lws = world.local_world_size
    if gpus_visible is not None and gpus_visible > 1 and lws > gpus_visible:
        raise WorldError(f"{lws} processes on {world.hostname} share {gpus_visible} visible GPUs: "
                         "several ranks would use the same GPU", where,
                         f"start one process per GPU ({_per_node_flag(world, gpus_visible)}) "
                         f"or request {lws} GPUs per node")
    if gpus_visible is not None and gpus_visible > lws:
        fix = _per_node_flag(world, gpus_visible) if world.is_distributed else \
            f"torchrun --nproc_per_node={gpus_visible} or srun --ntasks-per-node={gpus_visible}"
        warnings.append(f"only {lws} of the {gpus_visible} GPUs visible on {world.hostname} will be used "
                        f"— hint: start one process per GPU ({fix}), or request fewer GPUs")
    if world.world_size != lws * world.num_nodes:
        warnings.append(f"{world.world_size} processes are spread unevenly over {world.num_nodes} nodes "
                        f"({lws} on this one) — hint: ask for tasks per node, not a total "
                        "(--ntasks-per-node instead of --ntasks)")
    if world.launcher in ("slurm", "submitit"):
        if nodes is not None and nodes != world.num_nodes:
            warnings.append(f"the job asked for {nodes} node(s) but runs on {world.num_nodes} "
                            "— hint: check the srun/sbatch --nodes options against the config")
        if tasks_per_node is not None and tasks_per_node != lws:
            warnings.append(f"the job asked for {tasks_per_node} task(s) per node but {lws} run on "
                            f"{world.hostname} — hint: {_per_node_flag(world, tasks_per_node)}")
        if gpus_per_node is not None and gpus_per_node > 0 and gpus_per_node != lws:
            warnings.append(f"the job asked for {gpus_per_node} GPU(s) per node but runs {lws} task(s) on "
                            f"{world.hostname} — hint: one task per GPU ({_per_node_flag(world, gpus_per_node)})")
    return warnings
