"""A Snakemake lock left behind by a killed Snakemake: removed when nothing of this directory still runs.

Snakemake locks its working directory (`.snakemake/locks/`) while it runs and removes the lock when it ends;
a Snakemake killed with SIGKILL (or by a closed terminal, an out-of-memory kill, a node reboot) cannot, and the
next run stops with a LockException until someone runs `snakemake --unlock`. Unlocking while another Snakemake
still works in the same directory would let two of them write the same files, so the lock is only removed when
no process of this directory runs: no `snakemake` whose working directory is this one, and no job script of
its (`.snakemake/scripts/...`) left behind by a killed parent. Processes are read from /proc (Linux); where it
cannot be read, nothing is removed and the one command to run is printed.

`make run` calls this before Snakemake (`python -m slimdiff.workflow_lock`). A Snakemake on another host that
shares the directory (a SLURM login node) cannot be seen from here: there the command is printed, not run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

UNLOCK_COMMAND = "snakemake --unlock"


@dataclass(frozen=True)
class Process:
    pid: int
    cwd: Path
    argv: tuple[str, ...]


def locks(workdir: Path) -> list[Path]:
    folder = workdir / ".snakemake" / "locks"
    return sorted(folder.glob("*.lock")) if folder.is_dir() else []


def processes() -> list[Process] | None:
    """Every process whose working directory and command line can be read; None without /proc."""
    proc = Path("/proc")
    if not (proc / "self" / "cmdline").exists():
        return None
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = tuple(a for a in (entry / "cmdline").read_bytes().decode(errors="replace").split("\0") if a)
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or another user's
            continue
        found.append(Process(int(entry.name), cwd, argv))
    return found


def _runs_here(p: Process, workdir: Path) -> bool:
    """A Snakemake working in `workdir`, or a job script of one (its argv names .snakemake/scripts)."""
    text = " ".join(p.argv)
    if ".snakemake/scripts/" in text and (p.cwd == workdir or str(workdir) in text):
        return True
    is_snakemake = any(Path(a).name == "snakemake" or a.endswith("/snakemake/__main__.py") for a in p.argv[:3])
    if not is_snakemake and not (len(p.argv) > 2 and p.argv[1:3] == ("-m", "snakemake")):
        return False
    if "--directory" in p.argv or "-d" in p.argv:
        flag = "--directory" if "--directory" in p.argv else "-d"
        i = p.argv.index(flag)
        target = Path(p.argv[i + 1]) if i + 1 < len(p.argv) else p.cwd
        return (p.cwd / target).resolve() == workdir
    return p.cwd == workdir


def live_here(workdir: Path, procs: list[Process]) -> list[Process]:
    me = {os.getpid(), os.getppid()}
    return [p for p in procs if p.pid not in me and _runs_here(p, workdir)]


def clear_stale_lock(workdir: str | Path = ".", unlock: list[str] | None = None) -> str:
    """Remove a lock left by a dead Snakemake (running `snakemake --unlock`); return what was done, in words."""
    workdir = Path(workdir).resolve()
    held = locks(workdir)
    if not held:
        return "no Snakemake lock"
    procs = processes()
    if procs is None:
        return f"{workdir}: a Snakemake lock is present; if no Snakemake runs here, run `{UNLOCK_COMMAND}`"
    live = live_here(workdir, procs)
    if live:
        shown = ", ".join(f"{p.pid} ({' '.join(p.argv[:3])} ...)" for p in live[:5])
        return f"{workdir}: locked by a running Snakemake or its job, left alone: {shown}"
    subprocess.run(unlock or [*UNLOCK_COMMAND.split(), "--cores", "1"], cwd=workdir, check=True, capture_output=True)
    return f"{workdir}: removed the lock of a Snakemake that no longer runs ({len(held)} lock files)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m slimdiff.workflow_lock", description=__doc__.split("\n\n")[0])
    p.add_argument("workdir", nargs="?", default=".")
    args = p.parse_args(argv)
    message = clear_stale_lock(args.workdir)
    if message != "no Snakemake lock":
        print(message, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
