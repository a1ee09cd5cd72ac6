"""The tiny pipeline through `snakemake --profile slurm` against a real single-node SLURM on localhost.

tests/slurm/start_cluster.sh installs (apt) and starts munge, slurmctld and slurmd with two fake GPUs; the
test is skipped, with the script's reason, only where that cannot work (not root, no packages, a foreign
SLURM config). Job status comes from squeue: without accounting, sacct never reports a job as finished.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, copy_project

SCRIPTS = REPO / "tests" / "slurm"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
ENV.pop("CUDA_VISIBLE_DEVICES", None)

pytestmark = pytest.mark.slurm  # `make test-slurm` (CI runs it after `make test`)


@pytest.fixture(scope="module")
def slurm_cluster():
    proc = subprocess.run([str(SCRIPTS / "start_cluster.sh")], capture_output=True, text=True, timeout=600)
    if proc.returncode == 3:
        pytest.skip(f"no SLURM here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield
    subprocess.run([str(SCRIPTS / "stop_cluster.sh")], capture_output=True, timeout=120)


def test_tiny_pipeline_through_the_slurm_profile(slurm_cluster, tmp_path, metric_weights):
    proj = copy_project(tmp_path / "proj")
    cmd = [
        "timeout", "-k", "20", "900",
        str(BIN / "snakemake"), "--profile", "slurm",  # literally, from the project root (./slurm -> profiles/slurm)
        # a cluster without accounting: status by squeue, and no 40 s wait before the first status check
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--latency-wait", "5", "--max-threads", "2",  # a 2-CPU node: cap the 8-thread data rules
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=proj, timeout=960)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]

    summary = json.loads((proj / "results" / "metrics" / "summary.json").read_text())
    assert set(summary["runs"]) == {"epsilon_lp1.5_sc0.5/fold0", "x0_lp1.5_sc0.5/fold0"}
    assert (proj / "results" / "paper" / "table.md").exists()
    # GPU jobs ran inside SLURM allocations, on the devices SLURM gave them, without leasing their own
    for log in ("train/x0_lp1.5_sc0.5_fold0.log", "generate/x0_lp1.5_sc0.5_fold0_replica0_zbin01.log"):
        text = (proj / "results" / "logs" / log).read_text()
        assert re.search(r"SLURM job \d+: using its allocation, CUDA_VISIBLE_DEVICES=[01]\b", text), text[:2000]
        assert "leased GPU" not in text
    # the per-z-bin sampling jobs went in as job arrays, not one submission each
    generate_logs = sorted((proj / "results" / "logs" / "generate").glob("*.log"))
    assert len(generate_logs) == 6
    assert all(re.search(r"in SLURM job \d+ \(array \d+ task \d+\)", p.read_text()) for p in generate_logs)
    # CPU rules ran as SLURM jobs too; local rules (weights, aggregation, figures) stayed on the submit host
    assert "in SLURM job" in (proj / "results" / "logs" / "build_cache" / "build_cache.log").read_text()
    assert "in SLURM job" not in (proj / "results" / "logs" / "metric_weights" / "metric_weights.log").read_text()
