"""Versions and platform recorded next to every result, so a number can be traced to its software."""

from __future__ import annotations

import os
import platform
import sys
from datetime import UTC, datetime
from importlib import metadata

_PACKAGES = ("slimdiff", "numpy", "scipy", "nibabel", "monai", "torch", "nilearn", "pandas", "scikit-image")


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def machine() -> dict[str, str | int | None]:
    """The CPU model and core count, for timings: a number measured on one CPU model may not hold on another."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count()}
