"""Rule metrics_mask: MMD-MF per replica, per-feature Wasserstein and the tau sweep of one run and fold."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.metrics.evaluate import evaluate_masks

evaluate_masks(
    Path(snakemake.input.cache_meta).parent,
    list(snakemake.input.samples),
    Path(snakemake.output.mask).parent,
    fold=int(snakemake.wildcards.fold),
    cfg=dict(snakemake.config["metrics"]),
    run=snakemake.wildcards.run,
    scoring=dict(snakemake.params.scoring),  # the run's protocol: per replica or merged
)
