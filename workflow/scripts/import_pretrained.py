"""Rule import_pretrained: a model trained elsewhere (upstream checkpoint or model.pt) as a run's model.pt."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.upstream.pretrained import install_pretrained  # noqa: E402

p = snakemake.params.pretrained  # noqa: F821
summary = install_pretrained(
    snakemake.input.model,  # noqa: F821
    snakemake.output.model,  # noqa: F821
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    snakemake.params.claimed,  # noqa: F821
    config=p["config"],
    priors=p["priors"],
    weights=p["weights"],
)
print(json.dumps(summary, indent=2))
