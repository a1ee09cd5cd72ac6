"""Rule figures: the paper figures (PNG and PDF) from metrics files only."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.figures import plots

i = snakemake.input
out = Path(snakemake.output[0]).parent
plots.draw_all(i.summary, i.table, i.per_zbin, i.morphology, i.tau, i.lesions, i.curves, out, **snakemake.params.style)
