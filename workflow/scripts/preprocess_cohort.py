"""Rule preprocess_cohort: gather the preprocessed subjects, QC them, write the derivatives' participants.tsv."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.preprocess.cohort import gather  # noqa: E402

gather(
    snakemake.input.raw,  # noqa: F821
    list(snakemake.input.subjects),  # noqa: F821
    Path(snakemake.output.participants).parent,  # noqa: F821
    snakemake.params.qc["qc"],  # noqa: F821
    snakemake.params.on_bad_subject,  # noqa: F821
)
