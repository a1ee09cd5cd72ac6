"""Rule baseline: real vs real (training vs test slices), the reference line of every metric."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import json

import torch

from slimdiff.device import pick_device
from slimdiff.metrics.evaluate import evaluate_baseline

torch.set_num_threads(snakemake.threads)
cfg = dict(snakemake.config["metrics"], feature_cache=snakemake.params.feature_cache)
evaluate_baseline(
    Path(snakemake.input.cache_meta).parent,
    snakemake.output[0],
    fold=cfg["baseline_fold"],
    cfg=cfg,
    device=pick_device("auto"),
    weights=json.loads(Path(snakemake.input.weights).read_text()),
)
