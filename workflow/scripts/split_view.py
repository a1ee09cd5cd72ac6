"""Rule split_view: a protocol's folds as a view of the cache (same arrays and test set)."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import logging

from slimdiff.data.splits import write_split_view

protocol = snakemake.wildcards.protocol
splits = write_split_view(
    Path(snakemake.input.cache_meta).parent,
    Path(snakemake.output.cache_meta).parent,
    dict(snakemake.params.split),
    protocol,
)
for fold in splits["folds"]:
    logging.getLogger("split_view").info(
        "%s fold %d: %d training, %d validation subjects (%s); %d test subjects",
        protocol,
        fold["fold"],
        len(fold["train"]),
        len(fold["val"]),
        splits["fold_method"],
        len(splits["test"]),
    )
