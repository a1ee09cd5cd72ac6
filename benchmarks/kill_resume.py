"""Kill the pipeline at random times, rerun it, and compare the final table with an uninterrupted run.

    python benchmarks/kill_resume.py [--kills 3] [--seed 0] [--configfile config/config.yaml]
                                     [--work results/benchmarks/kill_resume] [--out results/benchmarks/kill_resume.json]

One uninterrupted run in its own copy of the workflow gives the reference table and summary.json (and its
wall time T). Then, for each of --kills trials, a fresh copy runs `make run`'s commands (the stale-lock check,
then `snakemake --cores all --resources gpu=N`), the whole process group is SIGKILLed at a uniform random time
in (0, T), and the same commands run again, to the end, with no flag and no manual step. Each trial records
when it was killed, which jobs were running then (their rule logs), whether the rerun succeeded, and whether
its table.md and summary.json (less the time stamp) equal the reference. Several CPU-hours on the embedded
default: run on demand, never in the test suite (the small version is tests/test_workflow.py's
test_killed_twice_then_rerun_gives_the_uninterrupted_table).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW = ("Snakefile", "rules", "workflow", "profiles", "report", "envs", "pretrained", "config", "dvc.yaml")


def copy_workflow(dest: Path, configfile: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in WORKFLOW:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
        elif src.exists():
            shutil.copy(src, dest / name)
    shutil.copy(configfile, dest / "config" / "run.yaml")  # relative `extends:` keep working beside the others
    return dest


def make_run_command(gpu_slots: str) -> str:
    return (
        f"{BIN}/python -m slimdiff.workflow_lock && "
        f"{BIN}/snakemake --cores all --resources gpu={gpu_slots} --configfile config/run.yaml"
    )


def run_to_end(proj: Path, command: str) -> tuple[bool, float, str]:
    start = time.monotonic()
    proc = subprocess.run(command, shell=True, cwd=proj, capture_output=True, text=True)
    return proc.returncode == 0, time.monotonic() - start, (proc.stdout + proc.stderr)[-2000:]


def run_and_kill(proj: Path, command: str, after_s: float) -> dict:
    proc = subprocess.Popen(
        command, shell=True, cwd=proj, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        proc.wait(timeout=after_s)
        return {"killed_at_s": None, "note": f"finished (rc {proc.returncode}) before the kill time"}
    except subprocess.TimeoutExpired:
        logs = proj / "results" / "logs"
        before = {p: p.stat().st_mtime for p in logs.rglob("*.log")} if logs.is_dir() else {}
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        # jobs whose log was written in the last seconds: what the kill most likely interrupted
        recent = sorted(str(p.relative_to(logs)) for p, t in before.items() if time.time() - t < 5)
        return {"killed_at_s": round(after_s, 1), "recent_job_logs": recent}


def results(proj: Path) -> tuple[str, dict]:
    def drop_created(obj):
        if isinstance(obj, dict):
            return {k: drop_created(v) for k, v in obj.items() if k != "created"}
        if isinstance(obj, list):
            return [drop_created(v) for v in obj]
        return obj

    table = (proj / "results" / "paper" / "table.md").read_text()
    summary = json.loads((proj / "results" / "metrics" / "summary.json").read_text())
    return table, drop_created(summary)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--configfile", default=str(REPO / "config" / "config.yaml"))
    p.add_argument("--work", default=str(REPO / "results" / "benchmarks" / "kill_resume"))
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "kill_resume.json"))
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO / "src"))
    from slimdiff.gpu_lease import gpu_slots
    from slimdiff.io import write_json
    from slimdiff.provenance import machine, versions

    # As the Makefile sets them: this environment's commands first, metric weights in the project's cache.
    os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ['PATH']}"
    os.environ.setdefault("TORCH_HOME", str(REPO / ".torch_home"))
    command = make_run_command(str(gpu_slots()))
    work, rng = Path(args.work), random.Random(args.seed)
    reference = copy_workflow(work / "reference", Path(args.configfile))
    ok, total_s, tail = run_to_end(reference, command)
    if not ok:
        raise SystemExit(f"the uninterrupted run failed:\n{tail}")
    ref = results(reference)
    print(f"reference: {total_s:.0f} s", flush=True)

    trials = []
    for i in range(args.kills):
        proj = copy_workflow(work / f"trial{i}", Path(args.configfile))
        trial = run_and_kill(proj, command, rng.uniform(1.0, total_s))
        ok, rerun_s, tail = run_to_end(proj, command)
        trial.update(rerun_ok=ok, rerun_s=round(rerun_s, 1))
        if ok:
            table, summary = results(proj)
            trial.update(same_table=table == ref[0], same_summary=summary == ref[1])
        else:
            trial["rerun_tail"] = tail
        trials.append(trial)
        print(f"trial {i}: {trial}", flush=True)

    report = {
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "configfile": args.configfile,
        "machine": machine(),
        "commit": subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip(),
        "versions": versions(),
        "uninterrupted_s": round(total_s, 1),
        "trials": trials,
        "all_equal": all(t.get("same_table") and t.get("same_summary") for t in trials),
    }
    write_json(args.out, report)
    print(f"{args.out}: all_equal={report['all_equal']}")
    return 0 if report["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
