"""Rule cache_qc: montage per z-bin and cohort statistics of the slice cache."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.data.qc import write_qc  # noqa: E402

write_qc(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    Path(snakemake.output.montage).parent,  # noqa: F821
    **snakemake.params.qc,  # noqa: F821
)
