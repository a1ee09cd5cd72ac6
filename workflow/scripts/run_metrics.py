"""Rule run_metrics: one metrics.json per run and fold (DVC metrics)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.metrics.evaluate import merge_run_metrics  # noqa: E402

merge_run_metrics(snakemake.input.image, snakemake.input.mask, snakemake.output[0])  # noqa: F821
