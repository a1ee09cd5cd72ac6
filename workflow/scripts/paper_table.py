"""Rule paper_table: results/paper/table.{csv,md,tex} from the metrics summary."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.figures.table import write_tables
from slimdiff.io import read_json, read_table

summary = read_json(snakemake.input.summary)
write_tables(
    read_table(snakemake.input.table),
    summary["baseline"],
    Path(snakemake.output.md).parent,
    regime_b=summary.get("regime_b"),
    utility=summary.get("utility"),  # absent without the utility stage: no Dice columns, no real-only row
)
