"""Rule aggregate_metrics: every run, the baseline and the statistics in results/metrics/summary.json; the
headline numbers of each run and fold for DVC in results/metrics/headline/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import json  # noqa: E402

from slimdiff.metrics.evaluate import aggregate, collect_run_tables  # noqa: E402
from slimdiff.metrics.headline import write_headline  # noqa: E402
from slimdiff.utility.summary import utility_section  # noqa: E402

summary = aggregate(
    list(snakemake.input.runs),  # noqa: F821
    snakemake.input.baseline,  # noqa: F821
    snakemake.output.summary,  # noqa: F821
    snakemake.output.table,  # noqa: F821
    weights=json.loads(Path(snakemake.input.weights).read_text()),  # noqa: F821
    utility=utility_section(snakemake.input.utility, snakemake.input.utility_real),  # noqa: F821
)
i, o = snakemake.input, snakemake.output  # noqa: F821
run_folds = snakemake.params.run_folds  # noqa: F821 - the (run, fold) of each per-run input, in order
for name in ("per_zbin", "morphology", "tau", "lesions"):
    collect_run_tables(list(i[name]), run_folds, o[name])
collect_run_tables(list(i.logs), snakemake.params.trained_run_folds, o.curves)  # noqa: F821
write_headline(summary, snakemake.output.headline)  # noqa: F821
