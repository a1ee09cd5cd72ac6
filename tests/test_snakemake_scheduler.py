"""Snakemake's scheduling rounds while jobs wait: one a second per finished job upstream, one pending wake-up with
slimdiff.snakemake_scheduler (rules/common.smk installs it). Measured on a workflow shaped like the pilot's: short
jobs finish one after another while a long job holds a core, then ready jobs wait for the other long one."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent

SNAKEFILE = """
{patch}
rule all:
    input:
        "out/long.txt",
        "out/long2.txt",
        expand("out/short{{i}}.txt", i=range(20)),
        expand("out/tail{{i}}.txt", i=range(4)),

rule long:
    output: "out/long.txt"
    priority: 10
    shell: "sleep 14; touch {{output}}"

rule short:
    output: "out/short{{i}}.txt"
    priority: 5
    shell: "sleep 0.1; touch {{output}}"

rule long2:
    output: "out/long2.txt"
    priority: 3
    shell: "sleep 8; touch {{output}}"

rule tail:
    output: "out/tail{{i}}.txt"
    priority: 0
    shell: "touch {{output}}"
"""
PATCH = "from slimdiff.snakemake_scheduler import install\nassert install()\n"
ROUND = "Resources before job selection"  # Snakemake's --verbose line at the start of every round


def run(workdir: Path, patch: str) -> tuple[int, float]:
    workdir.mkdir()
    (workdir / "Snakefile").write_text(SNAKEFILE.format(patch=patch))
    start = time.monotonic()
    cmd = [str(BIN / "snakemake"), "--cores", "2", "--verbose", "--nolock"]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300)
    wall = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((workdir / "out").iterdir())) == 26
    return (proc.stdout + proc.stderr).count(ROUND), wall


@pytest.mark.slow
def test_one_pending_wakeup_instead_of_one_a_second_per_finished_job(tmp_path):
    upstream_rounds, upstream_wall = run(tmp_path / "upstream", "")
    rounds, wall = run(tmp_path / "patched", PATCH)
    print(f"rounds: upstream {upstream_rounds} in {upstream_wall:.1f} s, one timer {rounds} in {wall:.1f} s")
    # Upstream: after the 20 short jobs, ~21 rounds a second for the 8 s the tail jobs wait (Snakemake 9.27.1).
    assert upstream_rounds > 100, f"upstream made {upstream_rounds} rounds: has Snakemake changed? then drop the patch"
    # Patched: a round per finished job and about one a second besides.
    assert rounds <= 26 + wall + 10, (rounds, wall)
    assert wall < upstream_wall + 2  # no later than upstream (which waits for its last timer at exit)
