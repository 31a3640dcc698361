"""Who am I: the distributed World from any launcher's variables (stdlib only, never torch).

The only package in hpcnn that reads launcher environment variables; training code receives a
World. See docs/distributed-launch.md for the detection order.
"""
from .checks import validate_against_request
from .job import JobInfo, job_info
from .detect import DETECTORS, derive_port, detect_world
from .gpus import TorchCuda, check_gpus_usable
from .world import LAUNCHERS, World

__all__ = ["DETECTORS", "JobInfo", "LAUNCHERS", "TorchCuda", "World", "check_gpus_usable", "job_info", "derive_port",
           "detect_world", "validate_against_request"]
