"""Which device and precision a process computes in: one answer for every command that loads a checkpoint (the
models, ``python -m profiling``, the benchmarks)."""

from __future__ import annotations

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def pick_device(device: str | None, world_size: int = 1, local_rank: int = 0) -> torch.device:
    """The device a process computes on: under data parallelism on CUDA, ``cuda:<local rank>``; otherwise the one
    asked for, or CUDA when available, else the CPU."""
    if world_size > 1 and torch.cuda.is_available() and (device is None or str(device).startswith("cuda")):
        return torch.device(f"cuda:{local_rank}")
    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device={device}: not a device name; the devices here: {available_devices()}") from None
    missing = (
        chosen.type == "cuda" and (not torch.cuda.is_available() or (chosen.index or 0) >= torch.cuda.device_count())
    ) or (chosen.type == "mps" and not torch.backends.mps.is_available())
    if missing:
        raise ValueError(f"device={device}: there is no such device here; the devices here: {available_devices()}")
    return chosen


def available_devices() -> str:
    """The devices this process can compute on, as ``device=`` spells them."""
    names = ["cpu"]
    if torch.cuda.is_available():
        names += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        names.append("mps")
    return ", ".join(names)


def pick_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto``: bfloat16 on CUDA, float32 elsewhere; otherwise one of :data:`DTYPES`, by name."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of auto, {', '.join(DTYPES)}; got {dtype!r}")
    return DTYPES[dtype]
