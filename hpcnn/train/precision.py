"""Mixed precision in one place: ``train.amp`` -> autocast dtype, gradient scaler, context (CUDA only:
on the CPU every step runs in float32, so runs are bitwise reproducible)."""
from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """``train.amp`` (fp32 | bf16 | fp16) on ``device``: the autocast dtype, None for float32."""
    return DTYPES.get(amp) if device.type == "cuda" else None


def grad_scaler(dtype: torch.dtype | None):
    """fp16 gradients underflow without loss scaling; bf16 and float32 need none."""
    return torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


def autocast(device: torch.device, dtype: torch.dtype | None):
    """The forward pass's autocast context (none for float32)."""
    return contextlib.nullcontext() if dtype is None else torch.autocast(device_type=device.type, dtype=dtype)


__all__ = ["amp_dtype", "autocast", "grad_scaler"]
