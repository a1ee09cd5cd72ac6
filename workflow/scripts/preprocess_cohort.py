"""Rule preprocess_cohort: gather the preprocessed subjects, QC them, write the derivatives' participants.tsv."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.preprocess.cohort import gather

gather(
    snakemake.input.raw,
    list(snakemake.input.subjects),
    Path(snakemake.output.participants).parent,
    snakemake.params.qc["qc"],
    snakemake.params.on_bad_subject,
)
