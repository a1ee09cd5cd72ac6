"""Rule gather_samples: the sample grid and one manifest for a run, fold and replica."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import pandas as pd  # noqa: E402

from slimdiff.generation.outputs import write_grid  # noqa: E402
from slimdiff.io import write_text  # noqa: E402

w = snakemake.wildcards  # noqa: F821
write_grid(snakemake.input, snakemake.output.grid, title=f"{w.run} fold {w.fold} replica {w.replica}")  # noqa: F821
manifests = [pd.read_csv(Path(p).with_suffix(".csv")).assign(file=Path(p).name) for p in snakemake.input]  # noqa: F821
write_text(snakemake.output.manifest, pd.concat(manifests, ignore_index=True).to_csv(index=False))  # noqa: F821
