"""Start the ranks of one DDP training (training.devices = N > 1) and watch them.

The process that calls runner.train_run stays a small supervisor and trains nothing itself; the N ranks are
fresh processes running `python -m slimdiff.training.ddp SPEC` (SPEC: the pickled train_run arguments):

- on a workstation (and on the CPU): N child processes with torchrun's variables (MASTER_ADDR, MASTER_PORT,
  WORLD_SIZE, RANK, LOCAL_RANK, NODE_RANK), which Lightning's LightningEnvironment takes as "launched
  externally";
- in a SLURM job: `srun --ntasks=N --ntasks-per-node=N --nodes=1`, one task per device, the form Lightning's
  SLURMEnvironment reads (SLURM_NTASKS, SLURM_PROCID, SLURM_LOCALID; tasks per node = devices). The rule asks
  for `gpu=N, tasks_per_node=N, nodes=1, mpi="srun"`: sbatch then grants N GPUs and N tasks on one node, and
  the SLURM executor's job step runs this supervisor directly in the allocation (its `mpi` path) rather than
  inside a one-task `srun -n1` step that the ranks' srun would have to overlap.

Not Lightning's own launchers: its subprocess launcher re-runs `sys.argv` (a Snakemake script's temporary file,
pytest), and ddp_spawn pickles the trainer and re-imports `__main__` (a Snakemake script has no main guard).

A kill of the supervisor kills the local ranks (PR_SET_PDEATHSIG), and a rank that fails stops the others (a
rank left waiting at a collective would hang until the process-group timeout): the job fails, and the rerun
resumes from last.ckpt like any other.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from slimdiff.io import atomic_path
from slimdiff.termination import log_stop

log = logging.getLogger(__name__)

SPEC_NAME = ".ddp_spec.pkl"  # in the run directory while the ranks run
LAUNCHER_ENV = "SLIMDIFF_DDP_LAUNCHER"  # "local" or "srun", set for the ranks


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In a child before exec: SIGKILL when the supervisor dies, however it dies (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _fd(stream) -> int | None:
    """The file descriptor behind sys.stdout/sys.stderr (a rule's log file), or None to inherit ours."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None


def use_srun() -> bool:
    """Ranks go through srun inside a SLURM allocation (the rule's `mpi` path), else are local children."""
    return "SLURM_JOB_ID" in os.environ and shutil.which("srun") is not None


def rank_and_world() -> tuple[int, int]:
    """This rank and the world size, as the launcher set them."""
    if os.environ.get(LAUNCHER_ENV) == "srun":
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"])
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def launch(spec: dict, world: int, out_dir: Path) -> None:
    """Run the ranks of `spec` (runner._fit_rank's arguments) and wait for all; raise if any fails."""
    spec_file = out_dir / SPEC_NAME
    with atomic_path(spec_file, suffix=".pkl") as tmp:
        tmp.write_bytes(pickle.dumps(spec))
    command = [sys.executable, "-m", "slimdiff.training.ddp", str(spec_file)]
    out, err = _fd(sys.stdout), _fd(sys.stderr)
    # A SIGTERM (scancel, a time limit) from here on is noted, and _watch stops the ranks: installed before they
    # start, so that one arriving while they start is not missed.
    stopping: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    try:
        if use_srun():
            procs = [_srun(command, world, out, err)]
        else:
            procs = _local(command, world, out, err)
        _watch(procs, stopping)
    finally:
        signal.signal(signal.SIGTERM, previous)
        spec_file.unlink(missing_ok=True)


def _local(command: list[str], world: int, out, err) -> list[subprocess.Popen]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    base.update(
        {LAUNCHER_ENV: "local", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())}
        | {"WORLD_SIZE": str(world), "NODE_RANK": "0"}
    )
    log.info("DDP: starting %d ranks on this machine (port %s)", world, base["MASTER_PORT"])
    return [
        subprocess.Popen(
            command,
            env={**base, "RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=out,
            stderr=err,
            preexec_fn=_die_with_parent,
        )
        for r in range(world)
    ]


def _srun(command: list[str], world: int, out, err) -> subprocess.Popen:
    """One srun step of `world` tasks on this node. The executor stripped the allocation's task geometry from
    our environment, so it is given in full; the step gets the job's GPUs (CUDA_VISIBLE_DEVICES lists all N in
    every task; Lightning takes cuda:LOCAL_RANK). A step named after its command would be "bash" or "python";
    Lightning reads the name "bash" as an interactive shell and ignores SLURM, hence a name of our own.
    --kill-on-bad-exit stops every task when one fails."""
    srun = ["srun", "--nodes=1", f"--ntasks={world}", f"--ntasks-per-node={world}", "--kill-on-bad-exit=1"]
    srun.append("--job-name=slimdiff-ddp")
    log.info("DDP: %s", " ".join(srun + command))
    return subprocess.Popen(srun + command, env={**os.environ, LAUNCHER_ENV: "srun"}, stdout=out, stderr=err)


def _watch(procs: list[subprocess.Popen], stopping: list[int]) -> None:
    """Wait for every rank; on the first failure (or a signal noted in `stopping`) stop the rest and raise."""
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
        if stopping or failed:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            for p in procs:
                p.wait()
            if stopping:
                raise SystemExit(log_stop(stopping[0]))
            i, code = failed[0]
            raise RuntimeError(
                f"DDP rank {i} of {len(procs)} failed with exit code {code} (its error is in this log); "
                "the other ranks were stopped. Running the job again resumes from last.ckpt."
            )
        if all(c == 0 for c in codes):
            return
        time.sleep(0.2)


# ---- what rule train asks of Snakemake (rules/train.smk) ----


def devices_param(runs: dict) -> Callable:
    """Rule train's `devices` param: training.devices of the job's run (its DDP world size)."""
    return lambda wildcards: runs[wildcards.run]["training"]["devices"]


def train_resources(base: dict, runs: dict, on_cluster: Callable[[], bool] = lambda: False) -> dict:
    """Rule train's resources: `base` (the config's cluster request) with gpu = training.devices and, for a DDP
    run, the SLURM geometry Lightning's SLURMEnvironment checks: N tasks on one node (tasks per node =
    devices), plus `mpi` so that the SLURM executor runs the job in its allocation, where launch() starts the
    ranks with srun. Locally `tasks_per_node`, `nodes` and `mpi` are unused; a single-device run gets none.

    `mem_mb` is per rank, so a DDP job asks for N times it: each rank is a whole process with its own copy of
    the model, optimiser, batches and cache. On a CPU that is a whole training's memory each (the paper's model
    in float32 at 160^2: 10.2 GB on one rank, 21.5 GB on two), and the pilot's memory cap must see it.

    On a cluster (`on_cluster()`: Snakemake submits the jobs, workflow.non_local_exec, known only once jobs are
    made, so asked then) a DDP run asks for its GPUs as `gres=gpu[:model]:N` (sbatch --gres), not `gpu=N`
    (--gpus): Snakemake caps every integer resource of a job at the global limit, and profiles/default, which
    Snakemake loads with the cluster profile and ranks above it, sets `gpu: 1` for workstations, so `gpu=2`
    would be submitted as --gpus=1. A string resource is not capped.
    """
    devices = devices_param(runs)
    model = base.get("gpu_model")

    def several(value):
        return lambda wildcards: value(devices(wildcards)) if devices(wildcards) > 1 else None

    def gres(n: int) -> str | None:
        return (f"gpu:{model}:{n}" if model else f"gpu:{n}") if on_cluster() else None

    def unless_gres(value):
        return lambda wildcards: None if devices(wildcards) > 1 and on_cluster() else value(wildcards)

    per_rank = base.get("mem_mb")
    resources = {
        **base,
        "mem_mb": (lambda wildcards: per_rank * devices(wildcards)) if per_rank else per_rank,
        "gpu": unless_gres(devices),
        "gres": several(gres),
        "tasks_per_node": several(lambda n: n),
        "nodes": several(lambda n: 1),
        "mpi": several(lambda n: "srun"),
    }
    if model:
        resources["gpu_model"] = unless_gres(lambda wildcards: model)
    return resources


def main(argv: list[str]) -> int:
    """A rank: run runner._fit_rank on the spec the supervisor wrote."""
    rank, world = rank_and_world()
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank {rank}/{world} %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    logging.captureWarnings(True)
    spec = pickle.loads(Path(argv[0]).read_bytes())
    from slimdiff.training.runner import _fit_rank

    _fit_rank(**spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
