"""The device a command runs on: "auto" (CUDA when a device is visible, else the CPU), "cpu", "cuda", "cuda:N".

torch is imported inside the functions, so the command-line modules can import this without loading torch, and
a GPU job can lease its device (slimdiff.gpu_lease) before anything touches CUDA.
"""

from __future__ import annotations

import logging

from slimdiff.errors import SlimdiffInputError

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> str:
    """The device to use for `requested`; a CUDA device asked for by name must be visible."""
    import torch

    requested = str(requested)
    if requested == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        device = requested
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise SlimdiffInputError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise SlimdiffInputError(f"device {device!r} requested but no CUDA device is visible")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise SlimdiffInputError(
            f"device {device!r} requested but only {torch.cuda.device_count()} CUDA devices are visible"
        )
    log.info("device %s: %s", device, describe(device))
    return device


def describe(device: str) -> str:
    """The GPU's name, or the CPU with its torch thread count."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"CPU ({torch.get_num_threads()} threads)"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AMX tiles or AVX512-BF16); elsewhere oneDNN emulates it,
    and bf16 autocast on the CPU is no faster than float32. (torch.cpu's probes are private API: any failure
    reads as no.)"""
    import torch

    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(getattr(torch.cpu, name)() for name in probes if hasattr(torch.cpu, name))
    except Exception:  # a probe that changed or broke says nothing about the hardware
        return False
