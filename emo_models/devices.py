"""Where and in what precision models run: the one dtype table, read by the CLI, the nodes and the benches."""

from __future__ import annotations

import torch

from .validation import InputError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


DEVICE_KINDS = ("cpu", "cuda", "mps", "xpu")


def resolve_device(name: str, label: str = "device") -> torch.device:
    """``auto`` (the first accelerator, else the CPU), ``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``xpu`` ->
    a device that exists on this machine; anything else is an :class:`InputError` naming ``label``."""
    choices = "auto, cpu, cuda, cuda:N, mps or xpu"
    text = str(name).strip().lower()
    if text == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise InputError(f"{label}: {name!r} is not a device; give {choices}") from None
    if device.type not in DEVICE_KINDS:
        raise InputError(f"{label}: {name!r} is not a device this package runs on; give {choices}")
    available = {"cpu": lambda: 1,
                 "cuda": lambda: torch.cuda.device_count() if torch.cuda.is_available() else 0,
                 "mps": lambda: int(torch.backends.mps.is_available()),
                 "xpu": lambda: torch.xpu.device_count() if hasattr(torch, "xpu") and torch.xpu.is_available() else 0,
                 }[device.type]()
    if available == 0:
        build = f"torch {torch.__version__}" + (", a CPU-only build" if device.type == "cuda" and not torch.version.cuda
                                                 else "")
        raise InputError(f"{label}: {name!r} asked for, but this machine has no usable {device.type} device ({build}); "
                         "use cpu or auto, or install a torch build for your GPU")
    if device.index is not None and device.index >= available:
        raise InputError(f"{label}: {name!r} asked for, but there {'is' if available == 1 else 'are'} only "
                         f"{available} {device.type} device{'s' if available > 1 else ''} (0 to {available - 1})")
    return device


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``auto`` (fp16 on a GPU, fp32 on the CPU) or a name of :data:`DTYPES` -> a torch dtype."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise InputError(f"dtype: {name!r}; choose auto or one of {', '.join(DTYPES)}")
    return DTYPES[name]
