"""Rule metrics_mask: MMD-MF per replica, per-feature Wasserstein and the tau sweep of one run and fold."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.metrics.evaluate import evaluate_masks  # noqa: E402

evaluate_masks(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    list(snakemake.input.samples),  # noqa: F821
    Path(snakemake.output.mask).parent,  # noqa: F821
    fold=int(snakemake.wildcards.fold),  # noqa: F821
    cfg=dict(snakemake.config["metrics"]),  # noqa: F821
    run=snakemake.wildcards.run,  # noqa: F821
    scoring=dict(snakemake.params.scoring),  # noqa: F821 - the run's protocol: per replica or merged
)
