"""Put a finished run's paper table into a docs/results page, stamped, so no number is typed by hand.

    python benchmarks/results_page.py --page docs/results/embedded-default.md --command "make run"
        [--results results] [--seconds results/benchmarks/make_run_seconds.txt] [--note TEXT]

Run it in the project directory that holds the results (its git HEAD is the commit stamped). The page keeps
its prose; only the block between the two markers below is replaced (the markers are added at the end of the
page the first time). The block holds the table as `make run` / `make ablation` printed it
(results/paper/table.md), the commit, the date, the CPU model and core count, the load average when the block
was written (a busy machine stretches wall times, not the numbers: same config and seed give the same table),
the command and, when given, its wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from slimdiff import provenance
from slimdiff.io import write_text

BEGIN = "<!-- table written by benchmarks/results_page.py: begin -->"
END = "<!-- table written by benchmarks/results_page.py: end -->"


def commit_of(directory: Path) -> str:
    """The short HEAD of `directory`, with "+changes" when tracked files differ from it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def block(table: str, command: str, commit: str, seconds: str | None, note: str | None) -> str:
    m = provenance.machine()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    lines = [
        BEGIN,
        f"Written by `benchmarks/results_page.py` from `{command}`'s `results/paper/table.md`: commit {commit}, "
        f"{provenance.timestamp()}, {m['cpu']} ({m['cores']} cores), load average {load} (1, 5, 15 min) when "
        "written" + (f"; wall time {seconds}" if seconds else "") + ".",
    ]
    if note:
        lines += ["", note]
    lines += ["", table.strip(), END]
    return "\n".join(lines) + "\n"


def replace_block(page: str, new: str) -> str:
    if BEGIN in page and END in page:
        head, rest = page.split(BEGIN, 1)
        return head + new.rstrip("\n") + rest.split(END, 1)[1]
    return page.rstrip("\n") + "\n\n" + new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page", required=True, type=Path, help="the docs/results page to update")
    parser.add_argument("--command", required=True, help="the command that made the results, e.g. 'make run'")
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--seconds", type=Path, help="a file holding the command's wall time (make run writes one)")
    parser.add_argument("--note", help="one paragraph put above the table (e.g. what else ran on the machine)")
    args = parser.parse_args(argv)
    table_path = args.results / "paper" / "table.md"
    if not table_path.is_file():
        print(f"error: {table_path}: no paper table; run the command first", file=sys.stderr)
        return 2
    seconds = args.seconds.read_text().strip() if args.seconds else None
    new = block(table_path.read_text(), args.command, commit_of(Path.cwd()), seconds, args.note)
    page = args.page.read_text() if args.page.exists() else ""
    write_text(args.page, replace_block(page, new))
    print(f"wrote the table block of {args.page}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
