"""Where the time of a pipeline run went: Snakemake's per-job benchmark files summed per rule.

    python benchmarks/stage_times.py [--results results] [--out results/benchmarks/stage_times.md]

Every rule with a `benchmark:` directive writes results/benchmarks/{rule}/{job}.tsv (wall seconds, CPU seconds,
peak memory). This sums them per rule, in pipeline order, and adds the wall time of the whole `make run` when
the Makefile recorded it (results/benchmarks/make_run_seconds.txt). CPU seconds over wall seconds of the run
says how well the jobs kept the cores busy.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

ORDER = [
    "synth_cohort",
    "build_cache",
    "cache_qc",
    "train",
    "generate",
    "gather_samples",
    "zbin_panels",
    "metrics_mask",
    "metrics_image",
    "baseline",
    "run_metrics",
    "aggregate_metrics",
    "paper_table",
    "figures",
]


def stage_times(bench_dir: Path) -> pd.DataFrame:
    rows = []
    for rule_dir in sorted(p for p in bench_dir.iterdir() if p.is_dir()):
        files = sorted(rule_dir.glob("*.tsv"))
        if not files:
            continue
        jobs = pd.concat([pd.read_csv(f, sep="\t").tail(1) for f in files], ignore_index=True)
        rows.append(
            {
                "stage": rule_dir.name,
                "jobs": len(files),
                "wall_s_sum": round(float(jobs["s"].sum()), 1),
                "wall_s_max": round(float(jobs["s"].max()), 1),
                "cpu_s_sum": round(float(jobs["cpu_time"].sum()), 1),
                "max_rss_mb": round(float(jobs["max_rss"].max()), 0),
            }
        )
    table = pd.DataFrame(rows)
    if table.empty:
        raise SystemExit(f"{bench_dir}: no benchmark files; run the pipeline first")
    rank = {name: i for i, name in enumerate(ORDER)}
    return table.sort_values("stage", key=lambda s: s.map(lambda n: rank.get(n, len(ORDER)))).reset_index(drop=True)


def to_markdown(table: pd.DataFrame, total_s: float | None) -> str:
    lines = [
        "| stage | jobs | wall s (sum) | wall s (longest job) | CPU s | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        lines.append(f"| {r.stage} | {r.jobs} | {r.wall_s_sum} | {r.wall_s_max} | {r.cpu_s_sum} | {r.max_rss_mb:.0f} |")
    cpu = table["cpu_s_sum"].sum()
    lines.append(f"| all benchmarked jobs | {table['jobs'].sum()} | {table['wall_s_sum'].sum():.1f} | | {cpu:.1f} | |")
    text = "\n".join(lines) + "\n"
    if total_s is not None:
        minutes = total_s / 60
        text += f"\n`make run` wall time: {total_s:.0f} s ({minutes:.1f} min); CPU s / wall s = {cpu / total_s:.2f}\n"
    return text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results")
    ap.add_argument("--out", help="Markdown file to write (default: results/benchmarks/stage_times.md)")
    args = ap.parse_args()
    bench = Path(args.results) / "benchmarks"
    total_file = bench / "make_run_seconds.txt"
    total = float(total_file.read_text().split()[0]) if total_file.exists() else None
    text = to_markdown(stage_times(bench), total)
    out = Path(args.out) if args.out else bench / "stage_times.md"
    out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
