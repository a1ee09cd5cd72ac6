"""Rule metrics_image: KID, FID, LPIPS per replica, per z-bin, and memorisation of one run and fold."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import json  # noqa: E402

import torch  # noqa: E402

from slimdiff.device import pick_device  # noqa: E402
from slimdiff.metrics.evaluate import evaluate_images  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
evaluate_images(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    list(snakemake.input.samples),  # noqa: F821
    Path(snakemake.output.image).parent,  # noqa: F821
    fold=int(snakemake.wildcards.fold),  # noqa: F821
    cfg=dict(snakemake.config["metrics"], feature_cache=snakemake.params.feature_cache),  # noqa: F821
    run=snakemake.wildcards.run,  # noqa: F821
    device=pick_device("auto"),
    weights=json.loads(Path(snakemake.input.weights).read_text()),  # noqa: F821
    scoring=dict(snakemake.params.scoring),  # noqa: F821 - the run's protocol: per replica or merged
)
