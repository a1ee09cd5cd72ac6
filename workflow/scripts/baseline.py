"""Rule baseline: real vs real (training vs test slices), the reference line of every metric."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import json  # noqa: E402

import torch  # noqa: E402

from slimdiff.device import pick_device  # noqa: E402
from slimdiff.metrics.evaluate import evaluate_baseline  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
cfg = dict(snakemake.config["metrics"], feature_cache=snakemake.params.feature_cache)  # noqa: F821
evaluate_baseline(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    snakemake.output[0],  # noqa: F821
    fold=cfg["baseline_fold"],
    cfg=cfg,
    device=pick_device("auto"),
    weights=json.loads(Path(snakemake.input.weights).read_text()),  # noqa: F821
)
