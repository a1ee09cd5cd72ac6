"""A training.devices: 2 run through `dvc repro`, and so through Snakemake: trains on 2 ranks, survives a kill, exports.

DVC's stage `compute` is `snakemake compute --resources gpu=$(python -m slimdiff.gpu_lease CONFIG)`, the command `make
run` gives Snakemake too. A SIGKILL of the whole process group (DVC, Snakemake, the job, its ranks) mid-training
leaves Snakemake's lock behind and last.ckpt half way; the same `dvc repro` again must clear the stale lock,
resume the training on 2 ranks, export model.pt and finish the stages, and DVC must then record them as done.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import copy_project

from slimdiff.model.file import read_model_file

BIN = Path(sys.executable).parent
DDP_RUN = "x0_lp1.5_sc0.5"


def ddp_project(path: Path, max_epochs: int = 2) -> Path:
    """The tiny workflow with one run trained on 2 ranks x batch 4 (tests/test_slurm.py uses it too)."""
    proj = copy_project(path)
    cfg_path = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["experiments"] = {"prediction": ["x0"], "p": [1.5], "self_conditioning": [0.5]}
    cfg["training"].update({"devices": 2, "batch_size": 4, "max_epochs": max_epochs})
    cfg["utility"]["enabled"] = False  # the segmenter stage has nothing to do with DDP (test_workflow runs it)
    cfg_path.write_text(yaml.safe_dump(cfg))
    return proj


@pytest.mark.pipeline
@pytest.mark.scenario
@pytest.mark.skipif(shutil.which("git") is None, reason="dvc repro needs git")
def test_a_2_device_run_trains_resumes_and_exports_through_dvc_repro(tmp_path, metric_weights):
    proj = ddp_project(tmp_path / "proj")
    cfg_path = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)

    def run(*cmd: str, timeout: float = 900) -> str:
        proc = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    run("git", "init", "-q")
    run(*git, "commit", "-q", "--allow-empty", "-m", "init")
    run(str(BIN / "dvc"), "init", "-q")

    train = proj / "results" / "runs" / DDP_RUN / "fold0" / "train"
    proc = subprocess.Popen(
        [str(BIN / "dvc"), "repro"],
        cwd=proj,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while not ((train / "last.ckpt").exists() and not (train / "model.pt").exists()):
        assert proc.poll() is None, f"dvc repro ended (rc {proc.returncode}) before a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 600 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # DVC, the Snakemake it runs, the job and its ranks
    proc.wait()
    assert not (train / "model.pt").exists()
    assert (proj / ".snakemake" / "locks").is_dir() and any((proj / ".snakemake" / "locks").iterdir())

    again = run(str(BIN / "dvc"), "repro")
    assert "Running stage 'compute'" in again and "Running stage 'figures'" in again
    log = (proj / "results" / "logs" / "train" / f"{DDP_RUN}_fold0.log").read_text()
    assert "resuming from" in log
    assert "DDP rank 0 of 2 on cpu (LightningEnvironment), batch 4 per device, 8 in all" in log
    prov = read_model_file(train / "model.pt")["provenance"]
    assert (prov["world_size"], prov["batch_size_per_device"], prov["effective_batch_size"]) == (2, 4, 8)
    assert pd.read_csv(train / "log.csv")["epoch"].tolist() == [0, 1]
    assert (proj / "results" / "paper" / "table.md").exists()
    assert "Running stage" not in run(str(BIN / "dvc"), "repro")
    assert "up to date" in run(str(BIN / "dvc"), "status")

    # training.devices is a parameter of the stage: one device again is a change DVC sees
    cfg["training"]["devices"] = 1
    cfg_path.write_text(yaml.safe_dump(cfg))
    status = run(str(BIN / "dvc"), "status")
    assert "compute" in status and "training" in status, status
