"""Rule figures: the paper figures (PNG and PDF) from metrics files only."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.figures import plots

plots.draw_figures(snakemake.input, Path(snakemake.output[0]).parent, **snakemake.params.style)
