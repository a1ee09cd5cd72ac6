"""Rule aggregate_metrics: every run, the baseline and the statistics in results/metrics/summary.json; the
headline numbers of each run and fold for DVC in results/metrics/headline/."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import json

from slimdiff.metrics.evaluate import aggregate, collect_run_tables
from slimdiff.metrics.headline import write_headline
from slimdiff.utility.summary import utility_section

i, o = snakemake.input, snakemake.output
summary = aggregate(
    list(snakemake.input.runs),
    snakemake.input.baseline,
    snakemake.output.summary,
    snakemake.output.table,
    weights=json.loads(Path(snakemake.input.weights).read_text()),
    utility=utility_section(i.utility, i.utility_real) if i.utility_real else None,  # None: utility.enabled off
)
run_folds = snakemake.params.run_folds  # the (run, fold) of each per-run input, in order
for name in ("per_zbin", "morphology", "tau", "lesions"):
    collect_run_tables(list(i[name]), run_folds, o[name])
collect_run_tables(list(i.logs), snakemake.params.trained_run_folds, o.curves)
write_headline(summary, snakemake.output.headline)
