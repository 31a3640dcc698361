"""GPU telemetry with NVML: sampled in a side thread, tagged with where training is, summarised per job
across nodes, shown live (`hpcnn top`/`gpus`) and plotted (`hpcnn report`). Never imports torch, and
never fails the job it observes (no GPU or no driver simply means no samples)."""
from .nvml import NVML_MODULE_ENV, open_nvml
from .sampler import GpuSampler, PositionTag
from .series import ProgressFile, read_progress, read_series
from .summary import summarize, summary_lines

__all__ = ["GpuSampler", "NVML_MODULE_ENV", "PositionTag", "ProgressFile", "open_nvml", "read_progress",
           "read_series", "summarize", "summary_lines"]
