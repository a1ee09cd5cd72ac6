"""Run `make run`'s commands in a project and SIGKILL them part way, for the resume-after-kill tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
# What `make run` runs (Makefile): the stale-lock check, then Snakemake with the workflow profile.
MAKE_RUN = f"{BIN}/python -m slimdiff.workflow_lock && {BIN}/snakemake --cores 2 --resources gpu=2"


def make_run(proj: Path) -> str:
    proc = subprocess.run(MAKE_RUN, shell=True, capture_output=True, text=True, env=ENV, cwd=proj, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def kill_when(proj: Path, ready: Callable[[], bool], what: str, timeout: float = 600) -> None:
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
    """The paper table and summary.json of a finished project: what a resumed run must reproduce."""
    table = (proj / "results" / "paper" / "table.md").read_text()
    return table, comparable(json.loads((proj / "results" / "metrics" / "summary.json").read_text()))
