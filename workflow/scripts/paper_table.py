"""Rule paper_table: results/paper/table.{csv,md,tex} from the metrics summary."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

import json  # noqa: E402

import pandas as pd  # noqa: E402

from slimdiff.figures.table import write_tables  # noqa: E402

baseline = json.loads(Path(snakemake.input.summary).read_text())["baseline"]  # noqa: F821
write_tables(pd.read_csv(snakemake.input.table), baseline, Path(snakemake.output.md).parent)  # noqa: F821
