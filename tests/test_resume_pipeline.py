"""An interrupted pipeline resumes to the same result: SIGKILL the whole Snakemake process group during
training and again during sampling, rerun the `make run` commands as they are, and get the table and summary
of an uninterrupted run, with no flag and no manual step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import copy_project

from slimdiff.workflow_lock import clear_stale_lock, live_here, locks, processes

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
# What `make run` runs (Makefile): the stale-lock check, then Snakemake with the workflow profile.
MAKE_RUN = f"{BIN}/python -m slimdiff.workflow_lock && {BIN}/snakemake --cores 2 --resources gpu=2"
RUN = "x0_lp1.5_sc0.5"


def project(path: Path) -> Path:
    proj = copy_project(path)
    cfg_path = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["experiments"] = {"prediction": ["x0"], "p": [1.5], "self_conditioning": [0.5]}
    cfg["training"]["max_epochs"] = 2  # a checkpoint to kill after, an epoch to kill in
    cfg["generation"]["job_unit"] = "replica"
    cfg["utility"]["enabled"] = False  # the kills hit training and sampling; test_workflow runs the stage
    cfg_path.write_text(yaml.safe_dump(cfg))
    return proj


def make_run(proj: Path) -> str:
    proc = subprocess.run(MAKE_RUN, shell=True, capture_output=True, text=True, env=ENV, cwd=proj, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def kill_when(proj: Path, ready, what: str, timeout: float = 600) -> None:
    """Start `make run`'s commands in their own process group and SIGKILL the whole group once `ready()`."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    proc = subprocess.Popen(MAKE_RUN, shell=True, env=ENV, cwd=proj, start_new_session=True, **quiet)
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"the pipeline ended (rc {proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def comparable(summary):
    """summary.json without the time it was written."""
    if isinstance(summary, dict):
        return {k: comparable(v) for k, v in summary.items() if k != "created"}
    if isinstance(summary, list):
        return [comparable(v) for v in summary]
    return summary


def results(proj: Path) -> tuple[str, dict]:
    table = (proj / "results" / "paper" / "table.md").read_text()
    return table, comparable(json.loads((proj / "results" / "metrics" / "summary.json").read_text()))


@pytest.mark.pipeline
def test_killed_twice_then_rerun_gives_the_uninterrupted_table(tmp_path, metric_weights):
    reference = project(tmp_path / "reference")
    make_run(reference)

    proj = project(tmp_path / "killed")
    train = proj / "results" / "runs" / RUN / "fold0" / "train"
    # 1. during training, between epochs: a checkpoint exists, the model does not yet
    kill_when(proj, lambda: (train / "last.ckpt").exists() and not (train / "model.pt").exists(), "mid-training")
    assert locks(proj), "the killed Snakemake left its lock"
    # 2. during sampling: the generate job has started (its log exists) and not finished
    replica = proj / "results" / "runs" / RUN / "fold0" / "samples" / "replica0"
    generate_log = proj / "results" / "logs" / "generate" / f"{RUN}_fold0_replica0.log"
    kill_when(proj, lambda: generate_log.exists() and not (replica / "manifest.csv").exists(), "sampling")
    # 3. the same command again finishes, and once more has nothing left to do
    make_run(proj)
    assert "Nothing to be done" in make_run(proj)

    table, summary = results(proj)
    ref_table, ref_summary = results(reference)
    assert table == ref_table
    assert summary == ref_summary
    log_csv = (train / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log_csv[1:]] == ["0", "1"], "every epoch once"


# ---- the stale-lock check on its own ----


def test_a_lock_without_a_live_snakemake_is_removed(tmp_path):
    lock_dir = tmp_path / ".snakemake" / "locks"
    lock_dir.mkdir(parents=True)
    (lock_dir / "0.input.lock").write_text("results/x\n")
    assert clear_stale_lock(tmp_path, unlock=["rm", "-r", str(lock_dir)]).endswith("no longer runs (1 lock files)")
    assert not locks(tmp_path)
    assert clear_stale_lock(tmp_path) == "no Snakemake lock"


def test_a_lock_of_a_running_snakemake_is_left_alone(tmp_path):
    lock_dir = tmp_path / ".snakemake" / "locks"
    lock_dir.mkdir(parents=True)
    (lock_dir / "0.input.lock").write_text("results/x\n")
    fake = tmp_path / "bin" / "snakemake"  # a process that looks like a Snakemake working in tmp_path
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nsleep 30\n")
    fake.chmod(0o755)
    proc = subprocess.Popen([str(fake), "--cores", "1"], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 10
        while not live_here(tmp_path.resolve(), processes() or []) and time.monotonic() < deadline:
            time.sleep(0.05)
        message = clear_stale_lock(tmp_path, unlock=["rm", "-r", str(lock_dir)])
        assert "left alone" in message and str(proc.pid) in message
        assert locks(tmp_path)
    finally:
        proc.kill()
        proc.wait()
