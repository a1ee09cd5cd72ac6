"""Rule run_metrics: one metrics.json per run and fold (DVC metrics)."""

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.metrics.evaluate import merge_run_metrics

merge_run_metrics(snakemake.input.image, snakemake.input.mask, snakemake.output[0])
