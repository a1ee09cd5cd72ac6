"""Rules utility and utility_real: segmenters trained per arm and seed, tested on the fold's real test slices."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import torch

from slimdiff.device import pick_device
from slimdiff.io import write_json
from slimdiff.utility.stage import utility_report

torch.set_num_threads(snakemake.threads)
samples = snakemake.input.get("samples")  # rule utility only; utility_real trains on real slices alone
report = utility_report(
    Path(snakemake.input.cache_meta).parent,
    int(snakemake.wildcards.fold),
    snakemake.config,  # the params carry what the result depends on (rerun contract)
    snakemake.wildcards.get("run", "real"),
    [Path(p) for p in samples] if samples else None,
    pick_device("auto"),
)
write_json(snakemake.output[0], report)
