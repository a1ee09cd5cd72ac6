"""slimdiff-figures: the paper table and the figures, from results/metrics/ only (no model, no samples)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slimdiff.cli._common import run, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="slimdiff-figures", description=__doc__)
    p.add_argument("--results", default="results", help="results directory (metrics/ and runs/*/fold*/ inside)")
    p.add_argument("--figures", default=None, help="figure directory (default RESULTS/figures)")
    p.add_argument("--paper", default=None, help="table directory (default RESULTS/paper)")
    p.add_argument("--table-only", action="store_true")
    p.add_argument("--dpi", type=int, default=200)
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:

        from slimdiff.errors import MissingInputError
        from slimdiff.figures import plots
        from slimdiff.figures.table import CONFIGURATION, write_tables
        from slimdiff.io import read_json, read_table
        from slimdiff.names import AggregatedFiles

        res = Path(args.results)
        files = AggregatedFiles.in_dir(res / "metrics")
        needed = [files.table, files.summary] if args.table_only else list(files.as_dict().values())
        for f in map(Path, needed):
            if not f.exists():
                raise MissingInputError(f"{f}: missing; run the metrics stage first")
        summary = read_json(files.summary)
        table = write_tables(
            read_table(files.table),
            summary["baseline"],
            args.paper or res / "paper",
            summary.get("regime_b"),
            utility=summary.get("utility"),
        )
        print((Path(args.paper or res / "paper") / "table.md").read_text())
        if args.table_only:
            return
        out = Path(args.figures or res / "figures")
        plots.draw_figures(files, out, dpi=args.dpi)
        print(f"{int((table['kind'] == CONFIGURATION).sum())} configurations; figures in {out}")

    return run(body, "slimdiff-figures")


if __name__ == "__main__":
    sys.exit(main())
