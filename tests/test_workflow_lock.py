"""The stale-lock check `make run` and DVC's stages run first: a lock of a dead Snakemake goes, a live one stays.

The whole resume after a kill, through this check: test_workflow.py (test_killed_twice_then_rerun_...)."""

import subprocess
import time

from slimdiff.workflow_lock import clear_stale_lock, live_here, locks, processes


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
