"""Rule split_view: a protocol's folds as a view of the cache (same arrays and test set)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import logging  # noqa: E402

from slimdiff.data.splits import write_split_view  # noqa: E402

protocol = snakemake.wildcards.protocol  # noqa: F821
splits = write_split_view(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    Path(snakemake.output.cache_meta).parent,  # noqa: F821
    dict(snakemake.params.split),  # noqa: F821
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
