"""Route a Snakemake script's logging, warnings and stderr to the rule's log file."""

import logging
import sys

from slimdiff import provenance


def to_rule_log(snakemake) -> None:
    handle = open(snakemake.log[0], "w", buffering=1)  # noqa: SIM115 - lives as long as the job
    sys.stderr = sys.stdout = handle  # progress bars and library prints land in the log too
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=handle, force=True
    )
    logging.captureWarnings(True)
    logging.getLogger("slimdiff").info(
        "rule %s, %d thread(s), versions %s", snakemake.rule, snakemake.threads, provenance.versions()
    )
