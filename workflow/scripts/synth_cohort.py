"""Rule synth_cohort: the embedded synthetic FCD cohort."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.data.synth import write_cohort  # noqa: E402

write_cohort(snakemake.output.cohort, **snakemake.params.synthetic, threads=snakemake.threads)  # noqa: F821
