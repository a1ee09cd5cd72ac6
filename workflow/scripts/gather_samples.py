"""Rule gather_samples: the sample grid and one manifest for a run, fold and replica."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import pandas as pd

from slimdiff.generation.outputs import write_grid
from slimdiff.io import read_table, write_text

w = snakemake.wildcards
write_grid(snakemake.input, snakemake.output.grid, title=f"{w.run} fold {w.fold} replica {w.replica}")
manifests = [read_table(Path(p).with_suffix(".csv")).assign(file=Path(p).name) for p in snakemake.input]
write_text(snakemake.output.manifest, pd.concat(manifests, ignore_index=True).to_csv(index=False))
