"""Rule paper_table: results/paper/table.{csv,md,tex} from the metrics summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import pandas as pd  # noqa: E402

from slimdiff.figures.table import write_tables  # noqa: E402
from slimdiff.io import read_json  # noqa: E402

summary = read_json(snakemake.input.summary)  # noqa: F821
write_tables(
    pd.read_csv(snakemake.input.table),  # noqa: F821
    summary["baseline"],
    Path(snakemake.output.md).parent,  # noqa: F821
    regime_b=summary.get("regime_b"),
    utility=summary.get("utility"),  # absent without the utility stage: no Dice columns, no real-only row
)
