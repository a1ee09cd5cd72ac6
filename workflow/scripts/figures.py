"""Rule figures: the paper figures (PNG and PDF) from metrics files only."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.figures import plots  # noqa: E402

i = snakemake.input  # noqa: F821
out = Path(snakemake.output[0]).parent  # noqa: F821
plots.draw_all(i.summary, i.table, i.per_zbin, i.morphology, i.tau, i.lesions, i.curves, out, **snakemake.params.style)  # noqa: F821
