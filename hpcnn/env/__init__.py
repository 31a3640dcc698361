"""Who am I: the distributed World from any launcher's variables (stdlib only, no torch)."""
from .detect import detect_world, slurm_port
from .world import World

__all__ = ["World", "detect_world", "slurm_port"]
