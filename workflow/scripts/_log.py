"""Route a Snakemake script's logging, warnings and stderr to the rule's log file; lease a GPU for GPU jobs."""

import atexit
import logging
import os
import platform
import sys

from slimdiff import provenance
from slimdiff.gpu_lease import lease_gpu

GPU_PEAK_PREFIX = "peak GPU memory"  # slimdiff.pilot.GPU_PEAK_PREFIX reads it


def to_rule_log(snakemake) -> None:
    """Call first in every rule script, before anything imports torch (the GPU lease must come first)."""
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
    if snakemake.resources.get("gpu", 0):
        lease_gpu()  # held until the job's process exits, crash or kill included
    atexit.register(_log_gpu_peak)


def _log_gpu_peak() -> None:
    """At the job's exit, the peak GPU memory it allocated (torch's counter) and the device, when it used CUDA:
    the pilot report (slimdiff.pilot) reads this line next to the job's benchmark file."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        peak_mib = torch.cuda.max_memory_allocated() / 2**20
        logging.getLogger("slimdiff").info("%s %.1f MiB on %s", GPU_PEAK_PREFIX, peak_mib, torch.cuda.get_device_name())
