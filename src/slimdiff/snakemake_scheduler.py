"""One pending re-evaluation timer in Snakemake's job scheduler, not one more for every job that finishes.

Snakemake 9's scheduler (`JobScheduler.schedule`) ends every scheduling round that found jobs ready with a
`threading.Timer` that wakes it again after the job-rate limit's timespan (`--max-jobs-per-timespan`, default
100/1s), in case the limit held jobs back. A finished job wakes it too, and that round arms a timer of its own:
while jobs wait for cores or GPUs, every finished job adds a chain of wake-ups, one a second each. After 20 short
jobs, about 21 rounds a second (tests/test_snakemake_scheduler.py: 209 rounds in 16 s, 36 with one timer); in the
pilot, Snakemake's own process came to use up to a third of a core that the jobs needed, and the paper grid on a
workstation, thousands of jobs finishing while others wait for a GPU, would keep a core busy with rounds that change
nothing (upstream discusses these wake-ups in snakemake/snakemake#3744).

One pending timer does what the chains did: a round looks at every ready job, whatever woke it, so the rate limit
is re-checked a timespan after the last round, as before. The timer is a daemon thread, so Snakemake no longer
waits a timespan at its exit either. `install` is called by the workflow (rules/common.smk); it changes nothing
when Snakemake's scheduler has no such method (another version).
"""

from __future__ import annotations

import threading

_MARK = "_slimdiff_one_timer"


def install() -> bool:
    """Patch Snakemake's scheduler in this process; True if patched now or before, False if not applicable."""
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:
        return False
    current = getattr(JobScheduler, "_schedule_reevalutation", None)  # sic: Snakemake's spelling
    if current is None:
        return False
    if getattr(current, _MARK, False):
        return True

    def schedule_reevaluation(self, delay: float) -> None:
        lock = self.__dict__.setdefault("_slimdiff_timer_lock", threading.Lock())
        with lock:
            if getattr(self, "_slimdiff_timer_pending", False):
                return
            self._slimdiff_timer_pending = True

        def wake() -> None:
            with lock:
                self._slimdiff_timer_pending = False  # first, so the round this wakes may arm the next timer
            self._open_jobs.release()

        timer = threading.Timer(delay, wake)
        timer.daemon = True
        timer.start()

    setattr(schedule_reevaluation, _MARK, True)
    JobScheduler._schedule_reevalutation = schedule_reevaluation
    return True
