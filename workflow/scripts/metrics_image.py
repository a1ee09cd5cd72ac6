"""Rule metrics_image: KID, FID, LPIPS per replica, per z-bin, and memorisation of one run and fold."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import json

import torch

from slimdiff.device import pick_device
from slimdiff.metrics.evaluate import evaluate_images

torch.set_num_threads(snakemake.threads)
evaluate_images(
    Path(snakemake.input.cache_meta).parent,
    list(snakemake.input.samples),
    Path(snakemake.output.image).parent,
    fold=int(snakemake.wildcards.fold),
    cfg=dict(snakemake.config["metrics"], feature_cache=snakemake.params.feature_cache),
    run=snakemake.wildcards.run,
    device=pick_device("auto"),
    weights=json.loads(Path(snakemake.input.weights).read_text()),
    scoring=dict(snakemake.params.scoring),  # the run's protocol: per replica or merged
)
