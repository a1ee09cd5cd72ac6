"""The glue every workflow script (workflow/scripts/*.py) starts with: route the job's logging, warnings and
stderr to its rule's log file, and lease a GPU for a GPU job.

It lives in the package, not beside the scripts, so a script imports it like any other module: Snakemake runs a
script from a copy under .snakemake/scripts, and with `--sdm conda` in envs/slimdiff.yaml, which installs this
package too. It must be imported before anything imports torch, since the GPU lease sets CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import atexit
import logging
import os
import platform
import sys
from typing import TYPE_CHECKING

from slimdiff import provenance
from slimdiff.gpu_lease import lease_gpu
from slimdiff.termination import exit_cleanly_on_sigterm

if TYPE_CHECKING:
    from snakemake.script import Snakemake

GPU_PEAK_PREFIX = "peak GPU memory"  # the line a CUDA job's log ends with; slimdiff.pilot reads it
USAGE_PREFIX = "resource usage"  # the line every job's log ends with: its CPU time and peak memory, as counted


def to_rule_log(snakemake: Snakemake, *, lease: bool = True) -> None:
    """Call first in every rule script, before anything imports torch (the GPU lease must come first).

    `lease=False` leaves the GPU lease to the script: a DDP training takes its N devices at once.
    """
    handle = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stderr = sys.stdout = handle  # progress bars and library prints land in the log too
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=handle, force=True
    )
    logging.captureWarnings(True)
    logging.getLogger("slimdiff").info(
        "rule %s, %d thread(s), versions %s", snakemake.rule, snakemake.threads, provenance.versions()
    )
    if "SLURM_JOB_ID" in os.environ:
        env = os.environ
        array = ""
        if "SLURM_ARRAY_JOB_ID" in env:
            array = f" (array {env['SLURM_ARRAY_JOB_ID']} task {env.get('SLURM_ARRAY_TASK_ID')})"
        logging.getLogger("slimdiff").info("in SLURM job %s%s on %s", env["SLURM_JOB_ID"], array, platform.node())
    exit_cleanly_on_sigterm()  # scancel or a time limit: clean-up, a line in this log and the usage line still run
    if lease and snakemake.resources.get("gpu", 0):
        lease_gpu()  # held until the job's process exits, crash or kill included
    atexit.register(_log_gpu_peak)
    atexit.register(_log_usage)


def _log_gpu_peak() -> None:
    """At the job's exit, the peak GPU memory it allocated (torch's counter) and the device, when it used CUDA:
    the pilot report (slimdiff.pilot) reads this line next to the job's benchmark file."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        logging.getLogger("slimdiff").info("%s %.1f MiB on %s", GPU_PEAK_PREFIX, peak_mib, torch.cuda.get_device_name())


def _log_usage() -> None:
    """At the job's exit, the CPU time and peak resident memory the kernel counted for it. Snakemake's benchmark
    samples the job's process tree every 30 s (after its first 15), so it misses the CPU time spent after its last
    sample and a memory peak between two: the pilot report (slimdiff.pilot) takes the larger of the two measures.

    CPU: this process and the children it waited for (DDP ranks, data workers), user + system. Peak: the largest
    one process's high-water mark (ru_maxrss), not the sum over processes that ran side by side."""
    try:
        import resource
    except ImportError:  # not a POSIX system: the benchmark's sampled measures stand alone
        return
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime
    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, in KiB on Linux
    peak_mb = max(me.ru_maxrss, children.ru_maxrss) * unit / 2**20  # MiB, as Snakemake's max_rss
    logging.getLogger("slimdiff").info("%s: CPU %.2f s, peak RSS %.1f MB", USAGE_PREFIX, cpu_s, peak_mb)
