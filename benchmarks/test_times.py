"""How long each test target takes on this machine, written to docs/results/test-times.md (run on demand).

    make test-times                     # in a fresh clone: test, test-fast, test-pipelines, then the page
    python benchmarks/test_times.py --targets test test-fast test-pipelines test-slurm

The goals of a newcomer's loop (issue #29) are `make test` within 10 minutes and `make test-fast` within 2, on 2
idle cores. Times depend on the CPU more than on anything in this repository (the same commit took twice as long
on a 2.0 GHz Xeon as on an AMD EPYC), so the page is written by this command, stamped with the commit, the CPU and
the load before the first target, never typed by hand. Run it in a fresh clone with nothing else running: .venv
is built before the clock starts, and each target runs alone, one after the other. Each target's full output goes
to results/logs/test-times/<target>.log; the page keeps the pytest summary, the time and the slowest tests.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path

from slimdiff.io import write_text
from slimdiff.pilot import machine_stamp

REPO = Path(__file__).resolve().parents[1]
GOALS_S = {"test": 600, "test-fast": 120}  # issue #29, on 2 idle cores
WHAT = {
    "test": "lint, the unit tests and one finished tiny project (`dvc repro`) with the checks that read it",
    "test-fast": "the inner loop: no `slow`, `pipeline` or `slurm` test",
    "test-pipelines": "the `scenario` tests: kill and resume, DVC push and clone, Regime B, DDP through DVC, an import",
    "test-slurm": "`snakemake --profile slurm` on a local SLURM: the tiny pipeline, a 2-GPU training, a scancel",
}
SUMMARY = re.compile(r"^=+ (.*?) in ([\d.]+)s(?: \([\d:]+\))? =+$", re.M)
DURATION = re.compile(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", re.M)


def run_target(target: str, log_dir: Path) -> dict:
    """`make <target>`: its wall time, exit status, pytest's summary and its slowest tests."""
    start = time.monotonic()
    proc = subprocess.run(["make", target], cwd=REPO, capture_output=True, text=True)
    wall = time.monotonic() - start
    output = proc.stdout + proc.stderr
    write_text(log_dir / f"{target}.log", output)
    return {"target": target, "rc": proc.returncode, "wall_s": wall, **read_pytest(output)}


def read_pytest(output: str) -> dict:
    """pytest's last summary line (counts and seconds) and its five slowest `--durations` entries."""
    summary = SUMMARY.findall(output)
    slowest = [(float(s), f"{test} ({when})") for s, when, test in DURATION.findall(output)]
    return {
        "pytest": summary[-1][0] if summary else "no pytest summary (see the log)",
        "pytest_s": float(summary[-1][1]) if summary else None,
        "slowest": sorted(slowest, reverse=True)[:5],
    }


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


def page(results: list[dict], stamp: dict, command: str) -> str:
    rows = []
    for r in results:
        goal = GOALS_S.get(r["target"])
        verdict = "-" if goal is None else ("met" if r["rc"] == 0 and r["wall_s"] <= goal else "NOT met")
        status = "ok" if r["rc"] == 0 else f"FAILED (exit {r['rc']})"
        rows.append(
            f"| `make {r['target']}` | {WHAT.get(r['target'], '')} | {r['pytest']} | {minutes(r['pytest_s'])} | "
            f"{minutes(r['wall_s'])} | {status} | {f'{minutes(goal)}: {verdict}' if goal else '-'} |"
        )
    slow = [
        f"- `make {r['target']}`: " + "; ".join(f"{name} {s:.0f} s" for s, name in r["slowest"])
        for r in results
        if r["slowest"]
    ]
    return "\n".join(
        [
            "# How long the tests take",
            "",
            f"- command: `{command}`, each target alone, one after the other, `.venv` built before",
            f"- commit {stamp.get('commit')}, {stamp.get('date')}",
            f"- CPU: {stamp.get('cpu')}, {stamp.get('cores')} cores, GPU: {stamp.get('gpu')}; load before the first "
            f"target: {stamp.get('load')}",
            "",
            "| command | what it runs | pytest | pytest time | wall time | result | goal (#29) |",
            "|---|---|---|---:|---:|---|---|",
            *rows,
            "",
            "Wall time is the whole `make` call (for `make test` the lint too). Slowest tests of each (from pytest's "
            "`--durations`):",
            "",
            *slow,
            "",
            "CI (`.ci/run`) runs `make test`, `make test-pipelines`, `make test-slurm` and then, where time and memory "
            "allow, the reduced pilot.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", nargs="+", default=["test", "test-fast", "test-pipelines"], choices=sorted(WHAT))
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "test-times.md")
    args = p.parse_args(argv)
    stamp = machine_stamp()  # the load before any target starts
    command = "python benchmarks/test_times.py --targets " + " ".join(args.targets)
    results = []
    for target in args.targets:
        print(f"make {target} ...", flush=True)
        results.append(run_target(target, REPO / "results" / "logs" / "test-times"))
        r = results[-1]
        print(f"  {r['pytest']}; {minutes(r['wall_s'])} (exit {r['rc']})", flush=True)
    text = page(results, stamp, command)
    write_text(args.out, text)
    print(text)
    return 0 if all(r["rc"] == 0 for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
