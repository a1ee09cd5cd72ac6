"""Rule zbin_panels: one picture per z-bin with every run's samples side by side (a report item per z-bin)."""

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.generation.outputs import write_zbin_panel

for zbin, rows in snakemake.params.rows.items():
    write_zbin_panel(dict(rows), getattr(snakemake.output, f"zbin{zbin}"))
