"""Rule build_cache: raw cohort -> slice cache."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.data.cache import build_cache  # noqa: E402

# With the preprocessing stage on, the cache reads its BIDS derivatives (the folder of their participants.tsv).
preprocessed = getattr(snakemake.input, "preprocessed", None)  # noqa: F821
build_cache(
    Path(preprocessed).parent if preprocessed else snakemake.input.raw,  # noqa: F821
    Path(snakemake.output.cache_meta).parent,  # noqa: F821
    dict(snakemake.params.data),  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
)
