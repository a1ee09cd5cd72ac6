"""Rule zbin_panels: one picture per z-bin with every run's samples side by side (a report item per z-bin)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.generation.outputs import write_zbin_panel  # noqa: E402

for zbin, rows in snakemake.params.rows.items():  # noqa: F821
    write_zbin_panel(dict(rows), getattr(snakemake.output, f"zbin{zbin}"))  # noqa: F821
