"""Where and in what precision models run: the one dtype table, read by the CLI, the nodes and the benches."""

from __future__ import annotations

import torch

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    """``auto`` (a CUDA GPU when there is one, else the CPU), ``cpu``, ``cuda``, ``cuda:1``, ``mps`` -> a device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: {name!r} is not a torch device; give auto, cpu, cuda or cuda:N") from None


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` (fp16 on a GPU, fp32 on the CPU) or a name of :data:`DTYPES` -> a torch dtype."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype: {name!r}; choose auto or one of {', '.join(DTYPES)}")
    return DTYPES[name]
