"""Rule cache_qc: montage per z-bin and cohort statistics of the slice cache."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.data.qc import write_qc

write_qc(
    Path(snakemake.input.cache_meta).parent,
    Path(snakemake.output.montage).parent,
    **snakemake.params.qc,
)
