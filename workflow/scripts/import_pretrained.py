"""Rule import_pretrained: a model trained elsewhere (upstream checkpoint or model.pt) as a run's model.pt."""

import json
from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

from slimdiff.upstream.pretrained import install_pretrained

p = snakemake.params.pretrained
summary = install_pretrained(
    snakemake.input.model,
    snakemake.output.model,
    Path(snakemake.input.cache_meta).parent,
    snakemake.params.claimed,
    config=p["config"],
    priors=p["priors"],
    weights=p["weights"],
)
print(json.dumps(summary, indent=2))
