"""Rule build_cache: raw cohort -> slice cache."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.data.cache import build_cache

# With the preprocessing stage on, the cache reads its BIDS derivatives (the folder of their participants.tsv).
preprocessed = getattr(snakemake.input, "preprocessed", None)
build_cache(
    Path(preprocessed).parent if preprocessed else snakemake.input.raw,
    Path(snakemake.output.cache_meta).parent,
    dict(snakemake.params.data),
    threads=snakemake.threads,
)
