"""Rules utility and utility_real: segmenters trained per arm and seed, tested on the fold's real test slices."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import torch  # noqa: E402

from slimdiff.device import pick_device  # noqa: E402
from slimdiff.io import write_json  # noqa: E402
from slimdiff.utility.stage import utility_report  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
samples = snakemake.input.get("samples")  # noqa: F821 - rule utility only; utility_real trains on real slices alone
report = utility_report(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    int(snakemake.wildcards.fold),  # noqa: F821
    snakemake.config,  # noqa: F821 - the params carry what the result depends on (rerun contract)
    snakemake.wildcards.get("run", "real"),  # noqa: F821
    [Path(p) for p in samples] if samples else None,
    pick_device("auto"),
)
write_json(snakemake.output[0], report)  # noqa: F821
