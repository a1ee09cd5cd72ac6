"""Keep large buffers in the process instead of handing them back to the OS after every network call.

glibc's malloc gives each allocation above its mmap threshold (128 KiB to 32 MiB, adapting) its own mapping and
returns it at free. A sampling loop allocates and frees the same few-MiB activations at every DDIM step, so by
default it pays page faults for them again and again: about 16 % of CPU sampling time for the small model
(benchmarks/vs_upstream.py). Raising the mmap and trim thresholds keeps those pages; peak memory is unchanged,
since the same buffers are reused. Linux/glibc only; elsewhere (or without glibc) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit for the mmap threshold
TRIM_THRESHOLD = 1 << 30
_done = False


def keep_freed_memory() -> bool:
    """Tune glibc malloc once per process; True when it took effect."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        )
    except (OSError, AttributeError):  # no glibc (musl, ...): nothing to tune
        return False
    _done = ok
    log.debug("glibc malloc: mmap threshold %d, trim threshold %d (%s)", MMAP_THRESHOLD, TRIM_THRESHOLD, ok)
    return ok
