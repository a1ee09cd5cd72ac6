"""A job stopped with SIGTERM (scancel, a SLURM time limit) unwinds: temporaries gone, the reason and the usage in
its log, exit status 143; a worker it forked dies of the signal as before."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A rule script's start (slimdiff.rule_log.to_rule_log) with a stand-in for Snakemake's `snakemake` object, then
# an atomic folder and an atomic file half written when the signal comes.
_JOB = """
import multiprocessing, sys, time
from pathlib import Path
from types import SimpleNamespace
from slimdiff.io import atomic_dir, atomic_path
from slimdiff.rule_log import to_rule_log

out = Path(sys.argv[1])
to_rule_log(SimpleNamespace(log=[str(out / "job.log")], rule="generate", threads=1, resources={}))
worker = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
worker.start()
try:
    with atomic_dir(out / "samples") as staged, atomic_path(out / "summary.json") as tmp:
        (staged / "zbin00.npz").write_bytes(b"half")
        tmp.write_text("{")
        (out / "ready").write_text(str(worker.pid))
        time.sleep(60)
finally:
    worker.join(10)
    (out / "worker_exit").write_text(str(worker.exitcode))
"""


def _start(tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    out = tmp_path / "out"
    out.mkdir()
    return subprocess.Popen([sys.executable, str(script), str(out)], stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen, ready: Path) -> int:
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "the job never got ready"
        time.sleep(0.05)
    return int(ready.read_text())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_job_removes_its_temporaries_and_says_why(tmp_path, signum):
    proc = _start(tmp_path)
    out = tmp_path / "out"
    worker = _wait_ready(proc, out / "ready")
    os.kill(worker, signal.SIGTERM)  # scancel signals every process of the job: the worker first here
    proc.send_signal(signum)
    proc.wait(60)
    if signum == signal.SIGTERM:
        assert proc.returncode == 143
    else:
        assert proc.returncode == -signal.SIGINT  # Ctrl-C: Python's own KeyboardInterrupt, unchanged
    assert sorted(p.name for p in out.iterdir()) == ["job.log", "ready", "worker_exit"]  # no .tmp left
    assert (out / "worker_exit").read_text() == str(-signal.SIGTERM)  # killed by the signal, not unwound
    text = (out / "job.log").read_text()
    if signum == signal.SIGTERM:
        assert "stopped by SIGTERM" in text and "exiting with 143" in text
        assert text.count("stopped by SIGTERM") == 1  # the worker did not log it too
    assert "resource usage: CPU" in text


def test_a_handler_set_before_stays(tmp_path):
    """Code that set its own SIGTERM handler (a DDP parent waiting on its ranks) keeps it."""
    code = (
        "import signal\nfrom slimdiff.termination import exit_cleanly_on_sigterm\n"
        "mine = lambda s, f: None\nsignal.signal(signal.SIGTERM, mine)\nexit_cleanly_on_sigterm()\n"
        "assert signal.getsignal(signal.SIGTERM) is mine\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
