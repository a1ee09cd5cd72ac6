"""Snakemake dry runs without paying Snakemake's import each time: one warm process, forked for each run.

A `snakemake -n` of the tiny project takes about 3.4 s on a 2.0 GHz Xeon, 2 s of which is importing Snakemake,
and the rerun contract alone makes about twenty. A server process imports `snakemake.cli` once, then forks for
each request: the child starts from that state (nothing of an earlier run is in it), takes the run's directory,
environment and arguments, and calls the entry point of the `snakemake` command with its output in files. What
the child runs is what the command runs, profiles included; only the import is shared. Tests use it for dry
runs only: jobs still run through the command itself.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def _serve() -> None:
    import snakemake.cli  # the import every request shares
    import snakemake.workflow

    replies = os.fdopen(os.dup(1), "w")  # fd 1 itself goes to each run's output file
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
                    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.chdir(request["cwd"])
                os.environ.clear()
                os.environ.update(request["env"])
                # what a fresh `snakemake` process reads at its start: its command line and directory
                sys.argv = ["snakemake", *request["argv"]]
                snakemake.workflow.Workflow._rundir = os.getcwd()
                snakemake.cli.main(request["argv"])
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            except BaseException:
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
        replies.flush()


class WarmSnakemake:
    """run(argv, cwd, env) -> CompletedProcess, like subprocess.run of `snakemake *argv` (text output)."""

    def __init__(self) -> None:
        self._server: subprocess.Popen | None = None
        atexit.register(self.close)

    def run(self, argv: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        if self._server is None or self._server.poll() is not None:
            self._server = subprocess.Popen(
                [sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
            )
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            request = {"argv": argv, "cwd": str(cwd), "env": env, "stdout": str(out), "stderr": str(err)}
            self._server.stdin.write(json.dumps(request) + "\n")
            self._server.stdin.flush()
            reply = self._server.stdout.readline()
            if not reply:
                raise RuntimeError(f"the warm Snakemake process ended (rc {self._server.wait()})")
            code = json.loads(reply)["returncode"]
            return subprocess.CompletedProcess(["snakemake", *argv], code, out.read_text(), err.read_text())

    def close(self) -> None:
        if self._server is not None and self._server.poll() is None:
            self._server.stdin.close()
            self._server.wait(timeout=30)


WARM = WarmSnakemake()  # one server per test process


if __name__ == "__main__":
    _serve()
