"""slimdiff-figures: the paper table and the figures, from metrics files only (no model, no samples)."""

from __future__ import annotations

import argparse
import glob
import json
import sys
from pathlib import Path

from slimdiff.cli._common import run, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="slimdiff-figures", description=__doc__)
    p.add_argument("--results", default="results", help="results directory (metrics/ and runs/*/fold*/ inside)")
    p.add_argument("--figures", default=None, help="figure directory (default RESULTS/figures)")
    p.add_argument("--paper", default=None, help="table directory (default RESULTS/paper)")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        import pandas as pd

        from slimdiff.figures import plots
        from slimdiff.figures.table import write_tables

        res = Path(args.results)
        summary_csv, summary_json = res / "metrics" / "summary.csv", res / "metrics" / "summary.json"
        for f in (summary_csv, summary_json):
            if not f.exists():
                raise FileNotFoundError(f"{f}: missing; run the metrics stage first")
        table = write_tables(
            pd.read_csv(summary_csv), json.loads(summary_json.read_text())["baseline"], args.paper or res / "paper"
        )
        print((Path(args.paper or res / "paper") / "table.md").read_text())
        if args.table_only:
            return
        out = Path(args.figures or res / "figures")

        def files(name):
            return sorted(glob.glob(str(res / "runs" / "*" / "fold*" / name)))

        plots.similarity_figure(summary_csv, summary_json, out)
        plots.per_zbin_figure(files("metrics/per_zbin.csv"), out)
        plots.morphology_figure(files("metrics/morphology.csv"), files("metrics/tau_sweep.csv"), out)
        plots.training_figure(files("train/log.csv"), out)
        print(f"{len(table) - 1} configurations; figures in {out}")

    return run(body, "slimdiff-figures")


if __name__ == "__main__":
    sys.exit(main())
