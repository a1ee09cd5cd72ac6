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

import pandas as pd
import pytest
import yaml
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
    config = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["generation"]["job_unit"] = "zbin"  # a job per z-bin, the cluster's unit: they go in as job arrays
    cfg["training"]["max_epochs"] = 1
    config.write_text(yaml.safe_dump(cfg))
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


def test_a_2_device_training_through_the_slurm_profile(slurm_cluster, tmp_path):
    """training.devices: 2 under `snakemake --profile slurm`: one SLURM job with 2 GPUs and 2 tasks on its node,
    in which the job starts its 2 ranks with srun and Lightning's SLURMEnvironment agrees (tasks per node =
    devices); then a longer max_epochs reruns the job, which resumes from last.ckpt, and exports model.pt."""
    import yaml
    from test_ddp_dvc import DDP_RUN, ddp_project

    from slimdiff.model.file import read_model_file

    proj = ddp_project(tmp_path / "proj", max_epochs=1)
    target = f"results/runs/{DDP_RUN}/fold0/train/model.pt"
    cmd = [
        "timeout", "-k", "20", "600",
        str(BIN / "snakemake"), "--profile", "slurm", target,
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--latency-wait", "5", "--max-threads", "2",
    ]  # fmt: skip
    train = proj / "results" / "runs" / DDP_RUN / "fold0" / "train"
    log_path = proj / "results" / "logs" / "train" / f"{DDP_RUN}_fold0.log"
    for epochs in (1, 2):
        cfg_path = proj / "config" / "config.yaml"
        cfg = yaml.safe_load(cfg_path.read_text())
        cfg["training"]["max_epochs"] = epochs
        cfg_path.write_text(yaml.safe_dump(cfg))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=proj, timeout=660)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
        log = log_path.read_text()
        job = re.search(r"in SLURM job (\d+)", log)
        assert job, log[:2000]
        # the job's geometry as SLURM granted it (kept by slurmctld for MinJobAge after the job ended)
        shown = subprocess.run(["scontrol", "show", "job", job.group(1)], capture_output=True, text=True).stdout
        assert "NumTasks=2" in shown and re.search(r"gres/gpu[:=]2|gpu:2", shown), shown
        assert "DDP: srun --nodes=1 --ntasks=2 --ntasks-per-node=2" in log
        for rank in (0, 1):
            assert f"DDP rank {rank} of 2 on cpu (SLURMEnvironment), batch 4 per device, 8 in all" in log, log[-3000:]
        assert pd.read_csv(train / "log.csv")["epoch"].tolist() == list(range(epochs))
    assert "resuming from" in log
    prov = read_model_file(train / "model.pt")["provenance"]
    assert (prov["world_size"], prov["effective_batch_size"], prov["epoch"]) == (2, 8, 1)


def test_a_cancelled_training_cleans_up_and_says_so(slurm_cluster, tmp_path):
    """scancel (as a time limit does) sends the job SIGTERM: the training's rule script unwinds instead of dying on
    the spot, so its log says what stopped it and ends with the usage line, and no temporary stays beside
    last.ckpt; the last epoch's checkpoint is there for the rerun."""
    import time

    proj = copy_project(tmp_path / "proj")
    config = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["training"]["max_epochs"] = 500  # long enough to be cancelled mid-run
    config.write_text(yaml.safe_dump(cfg))
    run = "x0_lp1.5_sc0.5"
    cmd = [
        "timeout", "-k", "20", "600",
        str(BIN / "snakemake"), "--profile", "slurm", f"results/runs/{run}/fold0/train/model.pt",
        "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
        "--latency-wait", "5", "--max-threads", "2", "--retries", "0",
    ]  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(cmd, env=ENV, cwd=proj, **quiet)
    train = proj / "results" / "runs" / run / "fold0" / "train"
    log_path = proj / "results" / "logs" / "train" / f"{run}_fold0.log"
    deadline = time.monotonic() + 480
    while not (train / "last.ckpt").exists():
        assert proc.poll() is None, f"Snakemake ended (rc {proc.returncode}) before the training wrote last.ckpt"
        assert time.monotonic() < deadline, "no last.ckpt within 480 s"
        time.sleep(0.5)
    job = re.search(r"in SLURM job (\d+)", log_path.read_text()).group(1)
    subprocess.run(["scancel", job], check=True)
    assert proc.wait(120) != 0
    log = log_path.read_text()
    assert "stopped by SIGTERM" in log and "exiting with 143" in log, log[-3000:]
    assert "resource usage: CPU" in log.split("stopped by SIGTERM")[1]
    assert (train / "last.ckpt").exists()
    assert not [p.name for p in train.iterdir() if p.name.endswith((".tmp", ".old"))]
