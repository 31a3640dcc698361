"""GPU telemetry with NVML: sampled in a side thread, summarised per job. Never imports torch,
and never fails the job it observes (no GPU or no driver simply means no samples)."""
from .nvml import GpuSample, open_nvml
from .sampler import GpuSampler
from .summary import summarize

__all__ = ["GpuSample", "GpuSampler", "open_nvml", "summarize"]
