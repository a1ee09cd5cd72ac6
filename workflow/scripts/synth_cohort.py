"""Rule synth_cohort: the embedded synthetic FCD cohort."""

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.data.synth import write_cohort

write_cohort(snakemake.output.cohort, **snakemake.params.synthetic, threads=snakemake.threads)
