"""SIGTERM ends a job the way a failure does: through Python's clean-up, with a line in its log.

SLURM sends SIGTERM when a job is cancelled (scancel) or reaches its time limit, and SIGKILL `KillWait` seconds
later (30 by default). Python's default for SIGTERM is to die on the spot: no `finally`, no `atexit`. The atomic
writers (slimdiff.io) then leave their temporaries, and the rule log stops mid-line with no word of why, nor the
job's resource usage. Turned into SystemExit, the signal unwinds the job: temporaries removed, the log says what
stopped it, and the exit status is the shell's 128 + 15 = 143.

A process forked from the job (a DataLoader or cache worker) inherits the handler but not the job's clean-up, so
there the signal keeps its default and ends the process at once, as before.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from types import FrameType

log = logging.getLogger("slimdiff")

_installed_by: int | None = None  # the PID of the process whose SIGTERM the handler turns into SystemExit


def exit_cleanly_on_sigterm() -> None:
    """Install the handler in the main thread of this process; a handler someone else set stays theirs."""
    global _installed_by
    if threading.current_thread() is not threading.main_thread():
        return  # signal.signal works only there
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None, _on_sigterm):
        return
    _installed_by = os.getpid()
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != _installed_by:  # a forked worker: die as it would have without us
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the clean-up short
    raise SystemExit(log_stop(signum))


def log_stop(signum: int) -> int:
    """Say in the job's log what stopped it; returns the exit status to stop with (the shell's 128 + signal)."""
    log.error(
        "stopped by %s (a cancel, a SLURM time limit, or the workflow stopping its jobs): cleaning up and exiting "
        "with %d; its outputs are incomplete, and running it again starts it over (a training resumes from "
        "last.ckpt)",
        signal.Signals(signum).name,
        128 + signum,
    )
    return 128 + signum
