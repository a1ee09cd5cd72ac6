"""The pilot (`make pilot`, config/pilot.yaml): the paper grid executed for real at the paper's geometry with
reduced counts, and what it says the full grid will cost.

Why a pilot: config/paper.yaml's 29 trainings and thousands of sampling jobs at 160^2 would otherwise run every
code path at that geometry for the first time after the data is downloaded and GPU-days are booked. The pilot
runs every rule of the paper's DAG once, in its own working directory (results/pilot, Snakemake's
--directory), and this module

* prepares its input (`prepare`): a synthetic cohort in ds004199's downloaded form, or the user's cohort, and
  the overlay that runs (results/pilot/config.yaml);
* lists the rules of a config's DAG from Snakemake itself (`dag_rules`), so that the check "the pilot runs the
  paper's rules" follows any change to the workflow or to config/paper.yaml;
* reads the benchmark files Snakemake wrote per job and extrapolates the cost of the full grid from the
  measured time per unit of work (optimiser step, sample x DDIM step, ...) times the paper config's counts
  (`report`), read from the resolved configs, never typed in by hand.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from slimdiff.config import read_config_file, validate_config
from slimdiff.errors import SlimdiffInputError
from slimdiff.io import write_json, write_text
from slimdiff.names import TRAIN_DIR
from slimdiff.rule_log import GPU_PEAK_PREFIX, USAGE_PREFIX  # lines a job's rule log ends with

REPO = Path(__file__).resolve().parents[2]
PILOT_DIR = Path("results/pilot")
RUN_CONFIG = "config.yaml"  # the overlay that runs, inside the pilot's working directory
COHORT_STAMP = ".pilot-cohort.json"  # what the generated cohort was written with (skip rewriting it)

# Rules the paper DAG has only when an optional part of config/paper.yaml is switched on. The pilot runs them
# so that they, too, have run once at the paper's geometry before a user needs them.
PAPER_OPTIONAL_RULES = {
    "import_pretrained": "config/paper.yaml's `released` grid (commented out until the checkpoint is downloaded)",
}
# Target-only rules: they run no code (no job script, no log, no benchmark).
TARGET_RULES = {"all", "compute"}


class PilotError(SlimdiffInputError):
    """The pilot cannot be prepared, checked or reported as asked."""


# ----------------------------------------------------------------------------------------------------------------
# Input: a generated cohort in ds004199's downloaded form, or the user's own, and the overlay that runs.


def resolved(config_file: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A config file (with the chain it extends) validated with the schema's defaults filled in."""
    from slimdiff.config import merge_config

    return validate_config(merge_config(read_config_file(config_file), overrides or {}), source=str(config_file))


def write_pilot_cohort(config: Mapping[str, Any], raw_dir: str | Path, threads: int = 1) -> bool:
    """Write the synthetic cohort of `config`'s data.synthetic into `raw_dir` in ds004199's downloaded form;
    False when the cohort there was written with the same settings already (rewriting it would change the
    folder's time stamp and rerun the preprocessing).

    What the download has: heads as acquired (data.synthetic.as_acquired), acq- names and a participants.tsv
    with the column data.splits.test_from names (the last subjects are the test split, at least one). What it
    does not have, for the mask-file backend: each head's known brain mask beside its FLAIR, named with
    preprocess.brain_extraction.mask_suffix. (With HD-BET the masks are simply not read.)
    """
    from slimdiff.data.synth import TRUTH_DIR, write_cohort

    data = config["data"]
    synthetic = dict(data["synthetic"])
    if not synthetic.get("as_acquired"):
        raise PilotError("the pilot's cohort is ds004199 as downloaded: set data.synthetic.as_acquired: true")
    split = data["splits"]["test_from"]
    n_patients = synthetic["patients"] + (synthetic["controls"] if data["ingest"]["include_controls"] else 0)
    n_test = max(1, round(data["splits"]["test_fraction"] * n_patients))
    if n_patients - n_test < data["splits"]["n_folds"]:
        raise PilotError(
            f"data.synthetic: {n_patients} subjects with {n_test} for testing cannot fill "
            f"{data['splits']['n_folds']} folds; raise data.synthetic.patients"
        )
    suffix = config["preprocess"]["brain_extraction"]["mask_suffix"]
    stamp = {"synthetic": synthetic, "test_from": split, "n_test": n_test, "mask_suffix": suffix}
    raw_dir = Path(raw_dir)
    stamp_file = raw_dir / COHORT_STAMP
    if stamp_file.is_file() and json.loads(stamp_file.read_text()) == json.loads(json.dumps(stamp)):
        return False
    table = write_cohort(raw_dir, threads=threads, **synthetic)
    for sid in table["participant_id"]:
        anat = raw_dir / sid / "anat"
        flair = next(anat.glob("*_FLAIR.nii.gz"))
        mask = raw_dir / TRUTH_DIR / sid / "anat" / f"{sid}_desc-brain_mask.nii.gz"
        shutil.copyfile(mask, flair.with_name(flair.name.replace("_FLAIR", suffix)))
    if split is not None:
        patients = table["participant_id"].tolist()
        values = [split["test"][0] if i >= len(patients) - n_test else split["train"][0] for i in range(len(patients))]
        table.insert(1, split["column"], values)
        write_text(raw_dir / "participants.tsv", table.to_csv(sep="\t", index=False, na_rep="n/a"))
    write_json(stamp_file, stamp)
    return True


def prepare(
    config_file: str | Path,
    workdir: str | Path = PILOT_DIR,
    raw_dir: str | Path | None = None,
    paper_file: str | Path | None = None,
    threads: int = 1,
    mem_mb: int | None = None,
) -> Path:
    """Write the overlay that runs (`workdir`/config.yaml) and, without `raw_dir`, the generated cohort.

    With `raw_dir` (the user's cohort), the overlay points data.raw_dir at it and restores the brain
    extraction of `paper_file` (the pilot's mask-file backend needs masks that only the generated cohort has).
    Paths in the overlay are absolute: Snakemake runs inside `workdir`. `mem_mb` is the memory the pilot's jobs
    may hold at once (make pilot's PILOT_MEM_MB; default 90 % of the memory available now): it decides whether
    a DDP run trains on the paper's devices here (`ddp_overlay`).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = Path(config_file).resolve()
    overlay: dict[str, Any] = {"extends": str(config_file)}
    if raw_dir is not None:
        raw_dir = Path(raw_dir).resolve()
        if not raw_dir.is_dir():
            raise PilotError(f"RAW_DIR {raw_dir} is not a folder (point it at your copy of ds004199)")
        overlay["data"] = {"source": "raw", "raw_dir": str(raw_dir)}
        if paper_file is not None:
            paper = read_config_file(paper_file)
            if "brain_extraction" in paper.get("preprocess", {}):
                overlay["preprocess"] = {"brain_extraction": paper["preprocess"]["brain_extraction"]}
    on_cpu = cpu_overlay(resolved(config_file))
    for section, values in on_cpu.items():
        overlay.setdefault(section, {}).update(values)
    if "precision" in on_cpu.get("training", {}):
        print(
            "pilot precision: no GPU and no native bf16 on this CPU (AMX, AVX512-BF16), so float32 instead of "
            "the paper's GPU precision (bf16 would be emulated, slower than float32), and the paper's "
            f"{FLOAT32_TRAIN_MEM_MB} MB per training ({FLOAT32_GENERATE_MEM_MB} MB per sampling job: one fits "
            "beside it)",
            flush=True,
        )
    if on_cpu.get("training", {}).get("channels_last") is False:
        print(
            "pilot memory layout: training in contiguous tensors, not channels_last, on a CPU in float32 (a "
            "fifth faster at 160x160: slimdiff.pilot.CPU_TRAINING_CHANNELS_LAST); sampling in channels_last",
            flush=True,
        )
    if "batch_size" in on_cpu.get("generation", {}):
        print(f"pilot sampling batch: {on_cpu['generation']['batch_size']} on a CPU (the paper's GPU: 32)", flush=True)
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    without_extends = {k: v for k, v in overlay.items() if k != "extends"}
    on_devices, lines = ddp_overlay(
        resolved(config_file, without_extends), gpus, available_mem_mb() if mem_mb is None else mem_mb
    )
    for name, values in on_devices.get("protocols", {}).items():
        overlay.setdefault("protocols", {}).setdefault(name, {}).setdefault("training", {}).update(values["training"])
    for line in lines:
        print(f"pilot DDP: {line}", flush=True)
    if gpus:
        device_mem_mb = [torch.cuda.get_device_properties(i).total_memory // 2**20 for i in range(gpus)]
        sharing, line = gpu_overlay(resolved(config_file), device_mem_mb, _usable_cores())
        overlay.setdefault("gpu", {}).update(sharing["gpu"])
        print(f"pilot GPU sharing: {line}", flush=True)
    run_config = workdir / RUN_CONFIG
    write_text(
        run_config,
        "# Written by slimdiff-pilot prepare: the config `make pilot` runs (inside this folder).\n"
        + yaml.safe_dump(overlay, sort_keys=False),
    )
    config = resolved(run_config)
    for page in config["figures"]["report_pages"]:  # the Snakemake report includes them: present from the start
        if not (workdir / page).exists():
            write_text(workdir / page, "The pilot has not finished: `slimdiff-pilot report` writes this page.\n")
    if raw_dir is None:
        if config["data"]["source"] != "raw":
            raise PilotError(f"{config_file}: the pilot reads its cohort as raw data (data.source: raw)")
        target = workdir / config["data"]["raw_dir"]
        wrote = write_pilot_cohort(config, target, threads)
        print(f"pilot cohort: {'written to' if wrote else 'kept (same settings) in'} {target}", flush=True)
    return run_config


# A float32 training at the paper's geometry peaked at 15.0 GB on a CPU (the twins; the joint model 9.8 GB; bf16:
# 5.5-7.0 GB): the paper's request. A float32 sampling job at the CPU batch below peaked at 1.6 GB, so its
# request is cut to fit beside a training in 24 GB (16 + 5.5 GB did not: sampling waited for all ten trainings,
# one core idle for 27 minutes). On a 2-core EPYC the overlap did not shorten the pilot (72 min against 71): side
# by side each job took about a fifth more CPU time (docs/results/pilot-cpu-float32.md).
FLOAT32_TRAIN_MEM_MB = 16000
FLOAT32_GENERATE_MEM_MB = 2500
# Samples per sampler forward pass on a CPU, by the dtype it computes in. The paper's 32 is a GPU's batch; on a
# CPU one forward of the paper's model at 160x160 cost least per sample at batch 8 in bf16 (a Xeon with AMX) and
# at batch 4 or 8 in float32 (an EPYC without native bf16; 4 holds less memory), a quarter to a third less than
# at 32, on one thread:
# `python benchmarks/cpu_bf16.py --sampling-batches 4 8 16 32` measures it on yours (docs/results/cpu-bf16.md,
# cpu-float32.md).
CPU_SAMPLING_BATCH = {"bfloat16": 8, "float32": 4}
# Whether a CPU trains the paper's model faster in channels_last (the paper's setting), by training precision.
# In float32 at 160x160, on one thread of an EPYC (AVX2, oneDNN), a training step took about a fifth less time
# with contiguous (NCHW) tensors: channels_last slows the convolutions' backward pass more than it speeds their
# forward (`python benchmarks/cpu_bf16.py --layouts`, docs/results/cpu-float32.md). Sampling keeps channels_last.
CPU_TRAINING_CHANNELS_LAST = {"bfloat16": True, "float32": False}


def cpu_overlay(
    config: Mapping[str, Any], has_cuda: bool | None = None, native_bf16: bool | None = None
) -> dict[str, dict[str, Any]]:
    """The overlay (none: empty) that fits the pilot to a machine without a GPU: float32 instead of bf16 where
    the CPU would only emulate bf16 (no AMX or AVX512-BF16), with the memory request a float32 training needs
    and the memory layout it trains fastest in, and the sampling batch a CPU runs fastest. Elsewhere bf16 is the
    paper's GPU precision, and on a CPU with native bf16 faster than float32 (docs/results/cpu-bf16.md). Only
    runtime keys change: the pilot's samples, models and scores are the same on every machine up to float
    rounding."""
    import torch

    from slimdiff import device  # not generation.sampling: that imports monai, seconds for one probe

    has_cuda = torch.cuda.is_available() if has_cuda is None else has_cuda
    if has_cuda:
        return {}
    native_bf16 = device.cpu_has_native_bf16() if native_bf16 is None else native_bf16
    out: dict[str, dict[str, Any]] = {}
    dtype = config["generation"]["compute_dtype"]
    if not native_bf16:
        if config["training"]["precision"] == "bf16-mixed":
            out["training"] = {"precision": "32-true"}
            if config["cluster"]["train"]["mem_mb"] < FLOAT32_TRAIN_MEM_MB:
                out["cluster"] = {"train": {"mem_mb": FLOAT32_TRAIN_MEM_MB}}  # pilot.yaml's request is for bf16
        if dtype == "bfloat16":
            out["generation"] = {"compute_dtype": "float32"}
    precision = out.get("training", {}).get("precision", config["training"]["precision"])
    trains_in = "bfloat16" if precision == "bf16-mixed" else "float32"  # auto is 32-true on a CPU
    if config["training"]["channels_last"] and not CPU_TRAINING_CHANNELS_LAST[trains_in]:
        out.setdefault("training", {})["channels_last"] = False
    float32 = dtype != "bfloat16" or not native_bf16  # auto is float32 on a CPU
    batch = CPU_SAMPLING_BATCH["float32" if float32 else "bfloat16"]
    if batch < config["generation"]["batch_size"]:
        out.setdefault("generation", {})["batch_size"] = batch
        if float32 and config["cluster"]["generate"]["mem_mb"] > FLOAT32_GENERATE_MEM_MB:
            out.setdefault("cluster", {})["generate"] = {"mem_mb": FLOAT32_GENERATE_MEM_MB}
    return out


def precision_line(config: Mapping[str, Any]) -> str:
    """What the pilot computed in, for the report (the extrapolated CPU hours hold for that precision)."""
    layout = "channels_last" if config["training"]["channels_last"] else "contiguous"
    return (
        f"precision: training {config['training']['precision']} ({layout}), sampling "
        f"{config['generation']['compute_dtype']} at batch {config['generation']['batch_size']} (auto: bf16 on a "
        "GPU, float32 on a CPU; the extrapolated hours are for the precision, layout and sampling batch the pilot "
        "ran)"
    )


def available_mem_mb() -> int | None:
    """90 % of MemAvailable (Linux), as make pilot's default PILOT_MEM_MB; None where /proc/meminfo is absent."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(int(line.split()[1]) / 1024 * 0.9)
    except OSError:
        return None
    return None


def ddp_overlay(
    config: Mapping[str, Any], gpus: int, mem_mb: int | None
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The paper's DDP (a protocol's training.devices N > 1, the camera-ready runs) wherever this machine can
    hold N ranks, one device elsewhere: the overlay that sets it, and a line per protocol saying which and why.

    A GPU machine holds N ranks with N visible GPUs (one rank per GPU). A CPU holds them when N times the
    training's memory request (per rank: each rank is a whole training, rules/train.smk asks for N times it)
    fits in `mem_mb`, the memory the pilot's jobs may hold at once. Only the world size changes: the per-device
    batch, and so the effective batch of N x that, stay the paper's where the ranks run.
    """
    per_rank = config["cluster"]["train"]["mem_mb"]
    out: dict[str, dict[str, Any]] = {}
    lines = []
    for name, protocol in config["protocols"].items():
        n = protocol.get("training", {}).get("devices", 1)
        if n <= 1:
            continue
        if gpus:
            fits, why = gpus >= n, f"{gpus} GPU(s) visible"
        else:
            need = n * per_rank
            fits = mem_mb is not None and need <= mem_mb
            held = "unknown" if mem_mb is None else f"{mem_mb} MB"
            why = f"{n} CPU ranks (gloo) x {per_rank} MB = {need} MB against the pilot's {held} (PILOT_MEM_MB)"
        if fits:
            lines.append(f"protocol {name} trains on {n} devices as the paper's ({why})")
        else:
            out.setdefault("protocols", {})[name] = {"training": {"devices": 1}}
            lines.append(f"protocol {name} trains on one device, not the paper's {n}: {why}")
    return out, lines


# Device memory one pilot job is allowed when jobs share a GPU: the paper's request per GPU job (16 GB, upstream's
# per-GPU memory), well above what a training at the paper's geometry (batch 16, bf16) should take: its resident
# memory on a CPU in bf16 is 7 GB, and on a GPU the activations and optimiser state are most of that. The
# report's GPU peak column measures it (torch.cuda.max_memory_allocated per job).
GPU_JOB_MEM_MB = 16000


def _usable_cores() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def gpu_overlay(
    config: Mapping[str, Any], device_mem_mb: list[int], cores: int
) -> tuple[dict[str, dict[str, Any]], str]:
    """How many of the pilot's GPU jobs share one device at once (gpu.jobs_per_device), and a line saying why.

    Why share: the pilot's GPU jobs (10 trainings of one step, 11 sampling jobs, the metric and utility jobs)
    each run for seconds, most of it start-up (imports, the CUDA context, loading weights), so one job per device
    would queue some 45 of them behind each other on one GPU. k jobs per device: one per GPU_JOB_MEM_MB of the
    smallest device's memory, and at most one per cluster.train.cpus_per_gpu CPU cores per device (each job
    drives its device from its own CPU threads); at least 1. $SLIMDIFF_GPU_JOBS_PER_DEVICE, when set, wins.
    """
    from slimdiff.gpu_lease import JOBS_PER_DEVICE_ENV, jobs_per_device

    if os.environ.get(JOBS_PER_DEVICE_ENV, "").strip():
        k = jobs_per_device()  # checks the value
        return {"gpu": {"jobs_per_device": k}}, f"{k} job(s) per device at once (${JOBS_PER_DEVICE_ENV})"
    n = len(device_mem_mb)
    by_memory = min(device_mem_mb) // GPU_JOB_MEM_MB
    cpus = config["cluster"]["train"]["cpus_per_gpu"]
    by_cores = cores // (n * cpus)
    k = max(1, min(by_memory, by_cores))
    why = (
        f"{min(device_mem_mb):,} MB on the smallest of {n} device(s) / {GPU_JOB_MEM_MB:,} MB per job = {by_memory}; "
        f"{cores} CPU cores / ({n} x {cpus} per job) = {by_cores}"
    )
    return {"gpu": {"jobs_per_device": k}}, f"{k} job(s) per device at once ({why})"


def sharing_line(config: Mapping[str, Any]) -> str:
    """Whether GPU jobs shared a device, for the report: shared, each job's wall time includes the others' use."""
    k = config["gpu"]["jobs_per_device"]
    if k == 1:
        return "GPU jobs: one per device"
    return (
        f"GPU jobs: up to {k} per device at once (gpu.jobs_per_device); a job's wall time includes its neighbours' "
        "use of the device, so the GPU times per unit below are upper bounds for a job alone on it"
    )


def ddp_line(pilot_cfg: Mapping[str, Any], paper_cfg: Mapping[str, Any]) -> str:
    """Which protocols trained with the paper's DDP, for the report."""
    parts = []
    for name, protocol in paper_cfg["protocols"].items():
        n = protocol.get("training", {}).get("devices", 1)
        if n <= 1 or name not in pilot_cfg["protocols"]:
            continue
        ours = pilot_cfg["protocols"][name].get("training", {}).get("devices", 1)
        parts.append(
            f"{name} on {n} ranks as the paper's"
            if ours == n
            else f"{name} on {ours} device, not the paper's {n} (this machine could not hold {n} ranks: "
            "`slimdiff-pilot prepare` says why)"
        )
    return "DDP: " + ("; ".join(parts) if parts else "none in the paper's protocols")


# ----------------------------------------------------------------------------------------------------------------
# The rules of a config's DAG, from Snakemake's own dry run (so the check follows the workflow and the configs).

JOB_STATS_HEADER = re.compile(r"^job\s+count\s*$")


def parse_job_stats(text: str) -> dict[str, int]:
    """Snakemake's "Job stats" table (dry run or real run) -> {rule: jobs}, the target rules included."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if JOB_STATS_HEADER.match(line.strip()):
            counts: dict[str, int] = {}
            for row in lines[i + 2 :]:
                parts = row.split()
                if len(parts) != 2 or parts[0] == "total":
                    break
                counts[parts[0]] = int(parts[1])
            return counts
    raise PilotError("no 'Job stats' table in Snakemake's output:\n" + text[-2000:])


def dag_text(config_file: str | Path, workdir: str | Path, snakemake: str | None = None) -> str:
    """What `snakemake -n --forceall` prints for `config_file` in `workdir`: every job it would run from scratch,
    then the Job stats table."""
    exe = snakemake or shutil.which("snakemake") or str(Path(sys.executable).with_name("snakemake"))
    cmd = [exe, "-n", "--forceall", "--cores", "1", "--snakefile", str(REPO / "Snakefile")]
    cmd += ["--directory", str(Path(workdir).resolve()), "--configfile", str(Path(config_file).resolve())]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        raise PilotError(f"snakemake dry run of {config_file} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout + proc.stderr


def dag_jobs(config_file: str | Path, workdir: str | Path, snakemake: str | None = None) -> dict[str, int]:
    """{rule: jobs} of everything `config_file` would run from scratch in `workdir`."""
    return parse_job_stats(dag_text(config_file, workdir, snakemake))


def job_rules(jobs: Mapping[str, int]) -> set[str]:
    """The rules that run code (target-only rules such as `all` have no job script)."""
    return set(jobs) - TARGET_RULES


def expected_pilot_rules(paper_rules: Iterable[str]) -> set[str]:
    """What the pilot must run: the paper DAG's rules plus the rules of the paper's optional parts."""
    return set(paper_rules) | set(PAPER_OPTIONAL_RULES)


def rule_set_problems(have: Iterable[str], want: Iterable[str], what: str) -> list[str]:
    """Human-readable differences between two rule sets (empty when equal)."""
    have, want = set(have), set(want)
    out = []
    if want - have:
        out.append(f"{what} lacks {', '.join(sorted(want - have))}")
    if have - want:
        out.append(f"{what} has rules the paper grid does not: {', '.join(sorted(have - want))}")
    return out


def executed_rules(workdir: str | Path) -> set[str]:
    """Rules that ran in `workdir`: every rule writes a log under results/logs/<rule>/ (and most a benchmark)."""
    workdir = Path(workdir)
    found = set()
    for kind in ("logs", "benchmarks"):
        root = workdir / "results" / kind
        if root.is_dir():
            found |= {d.name for d in root.iterdir() if d.is_dir() and any(f.is_file() for f in d.iterdir())}
    return found


# ----------------------------------------------------------------------------------------------------------------
# Measurements: Snakemake's benchmark files (one per job), and the lines each job's log ends with (slimdiff.rule_log):
# its CPU time and peak memory as the kernel counted them, its GPU peak.

BENCHMARK_COLUMNS = {"s": "wall_s", "max_rss": "max_rss_mb", "cpu_time": "cpu_s"}
_GPU_PEAK = re.compile(re.escape(GPU_PEAK_PREFIX) + r" ([0-9.]+) MiB on (.+)$")
_USAGE = re.compile(re.escape(USAGE_PREFIX) + r": CPU ([0-9.]+) s, peak RSS ([0-9.]+) MB")
_JOB_NAME = re.compile(
    r"^(?P<run>.+?)_fold(?P<fold>\d+)(?:_replica(?P<replica>\d+))?(?:_zbin(?P<zbin>\d+))?$|^fold(?P<fold_only>\d+)$"
)


@dataclass(frozen=True)
class Job:
    """One job, as its benchmark file names it (results/benchmarks/<rule>/<name>.tsv)."""

    rule: str
    name: str
    run: str | None = None
    fold: int | None = None
    replica: int | None = None
    zbin: int | None = None


def parse_job(rule: str, name: str) -> Job:
    m = _JOB_NAME.match(name)
    if m is None:
        return Job(rule, name)
    if m["fold_only"] is not None:
        return Job(rule, name, fold=int(m["fold_only"]))
    as_int = {k: int(m[k]) if m[k] is not None else None for k in ("fold", "replica", "zbin")}
    return Job(rule, name, run=m["run"], **as_int)


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _larger(a: float, b: float) -> float:
    return b if math.isnan(a) else max(a, b)


def read_benchmarks(workdir: str | Path) -> pd.DataFrame:
    """One row per job: rule, job name, wall_s, cpu_s, max_rss_mb, gpu_peak_mib, gpu (device name or "").

    Wall time is Snakemake's. CPU time and peak memory are the larger of Snakemake's (sampled every 30 s, so short
    of the CPU spent after the last sample and blind to a peak between two) and the job's own count at exit (its
    log's usage line, exact for its processes); each is a lower bound of the truth, the larger the closer."""
    workdir = Path(workdir)
    rows = []
    for tsv in sorted((workdir / "results" / "benchmarks").glob("*/*.tsv")):
        table = pd.read_csv(tsv, sep="\t")
        if table.empty:
            continue
        last = table.iloc[-1]  # a benchmark file holds one row per repeat; Snakemake's default is one
        row = {"rule": tsv.parent.name, "job": tsv.stem}
        row.update({ours: _number(last.get(theirs)) for theirs, ours in BENCHMARK_COLUMNS.items()})
        row["gpu_peak_mib"], row["gpu"] = math.nan, ""
        log = workdir / "results" / "logs" / tsv.parent.name / f"{tsv.stem}.log"
        if log.is_file():
            for line in log.read_text(errors="replace").splitlines():
                if (m := _GPU_PEAK.search(line)) is not None:
                    row["gpu_peak_mib"], row["gpu"] = float(m[1]), m[2].strip()
                elif (m := _USAGE.search(line)) is not None:
                    row["cpu_s"] = _larger(row["cpu_s"], float(m[1]))
                    row["max_rss_mb"] = _larger(row["max_rss_mb"], float(m[2]))
        rows.append(row)
    measured = {(r["rule"], r["job"]) for r in rows}
    for log in sorted((workdir / "results" / "logs").glob("*/*.log")):
        if (log.parent.name, log.stem) not in measured:  # a rule without a benchmark directive: ran, unmeasured
            rows.append({"rule": log.parent.name, "job": log.stem, "gpu": ""})
    columns = ["rule", "job", "wall_s", "cpu_s", "max_rss_mb", "gpu_peak_mib", "gpu"]
    return pd.DataFrame(rows, columns=columns).astype({c: float for c in columns[2:6]})


def gpu_sections(rules_dir: str | Path = REPO / "rules") -> dict[str, str]:
    """{rule: config `cluster` section} for the GPU-tagged rules, read from the rule files (gpu_resources("x")),
    so that a new GPU rule is checked against its request without a change here."""
    out = {}
    for smk in sorted(Path(rules_dir).glob("*.smk")):
        blocks = re.split(r"^\s*rule (\w+):", smk.read_text(), flags=re.M)
        for name, body in zip(blocks[1::2], blocks[2::2], strict=True):
            if (m := re.search(r'gpu_resources\("(\w+)"\)', body)) is not None:
                out[name] = m[1]
    return out


# ----------------------------------------------------------------------------------------------------------------
# The work model: what one job of each rule does, in units whose time the pilot measures and whose number the
# paper config gives. A rule without a model (a new one) is costed per job.

STAGES = {
    "preprocess": "data",
    "preprocess_cohort": "data",
    "build_cache": "data",
    "split_view": "data",
    "cache_qc": "data",
    "train": "train",
    "import_pretrained": "train",
    "generate": "generate",
    "gather_samples": "generate",
    "zbin_panels": "generate",
    "metric_weights": "metrics",
    "metrics_image": "metrics",
    "metrics_mask": "metrics",
    "run_metrics": "metrics",
    "baseline": "metrics",
    "aggregate_metrics": "metrics",
    "utility": "utility",
    "utility_real": "utility",
    "paper_table": "figures",
    "figures": "figures",
}
UTILITY_ARMS = {"utility": 2, "utility_real": 1}  # real+syn and syn per run; real once per fold


@dataclass
class DataSizes:
    """Slices per fold of a cohort, and its subject count (the pilot's cache, or scaled to the paper's)."""

    subjects: int
    train_slices: dict[int, float] = field(default_factory=dict)
    val_slices: dict[int, float] = field(default_factory=dict)

    def scaled(self, subjects: int) -> DataSizes:
        f = subjects / max(self.subjects, 1)
        return DataSizes(
            subjects,
            {k: v * f for k, v in self.train_slices.items()},
            {k: v * f for k, v in self.val_slices.items()},
        )

    def fold(self, fold: int) -> tuple[float, float]:
        """(train, val) slices of `fold` (a fold the cache lacks: the mean over its folds)."""
        mean = (
            sum(self.train_slices.values()) / max(len(self.train_slices), 1),
            sum(self.val_slices.values()) / max(len(self.val_slices), 1),
        )
        return self.train_slices.get(fold, mean[0]), self.val_slices.get(fold, mean[1])


def cache_sizes(cache_dir: str | Path) -> DataSizes:
    """Train and validation slices per fold, and subjects, of a built cache."""
    from slimdiff.data.splits import fold_membership

    cache_dir = Path(cache_dir)
    index = pd.read_csv(cache_dir / "index.csv")
    meta = json.loads((cache_dir / "cache_meta.json").read_text())
    folds = sorted(int(f) for f in index["val_fold"].unique() if int(f) >= 0)
    sizes = DataSizes(int(index["subject"].nunique()) if "subject" in index else int(meta["counts"]["subjects"]))
    for fold in folds:
        member = fold_membership(index, fold)
        sizes.train_slices[fold] = float((member == "train").sum())
        sizes.val_slices[fold] = float((member == "val").sum())
    return sizes


def _samples_per_replica(config: Mapping[str, Any]) -> int:
    gen = config["generation"]
    return config["data"]["cache"]["z_bins"] * len(gen["classes"]) * gen["n_per_condition"]


def _train_slices(run_cfg: Mapping[str, Any], n_train: float, n_val: float) -> float:
    """Slices one training pushes through the network: optimiser steps x batch plus the validation slices of
    every epoch (max_epochs: early stopping may end it sooner). Slices, not steps: runs differ in batch size."""
    tr = run_cfg["training"]
    bs = tr["batch_size"] * tr.get("devices", 1)  # the effective batch of a DDP run
    per_epoch = math.floor(n_train / bs) if n_train >= bs else 1.0
    if tr.get("steps_per_epoch"):
        per_epoch = min(per_epoch, tr["steps_per_epoch"])
    steps = tr["max_epochs"] * per_epoch
    epochs = tr["max_epochs"]
    if tr["max_steps"] > 0 and tr["max_steps"] < steps:
        steps, epochs = tr["max_steps"], math.floor(tr["max_steps"] / per_epoch)
    val = n_val if tr["val_max_slices"] is None else min(n_val, tr["val_max_slices"])
    return steps * bs + epochs * val


def work_units(rule: str, job: Job, config: Mapping[str, Any], runs: Mapping[str, dict], sizes: DataSizes) -> float:
    """Units of work of one job of `rule` under `config` (its runs and data sizes); 1 for a per-job rule."""
    gen, metrics, util = config["generation"], config["metrics"], config["utility"]
    run_cfg = runs.get(job.run) if job.run is not None else None
    if rule == "train" and run_cfg is not None:
        return _train_slices(run_cfg, *sizes.fold(job.fold or 0))
    if rule == "generate" and run_cfg is not None:
        samples = _samples_per_replica(config) / (config["data"]["cache"]["z_bins"] if job.zbin is not None else 1)
        return samples * run_cfg["sampler"]["steps"]
    if rule == "metrics_image":
        images = gen["replicas"] * _samples_per_replica(config)
        return images + metrics["lpips_pairs"] + metrics["zbin_lpips_pairs"] * config["data"]["cache"]["z_bins"]
    if rule == "metrics_mask":
        return gen["replicas"] * _samples_per_replica(config)
    if rule in UTILITY_ARMS:
        return UTILITY_ARMS[rule] * len(util["seeds"]) * util["steps"]
    if rule in ("build_cache", "cache_qc", "preprocess_cohort"):
        return sizes.subjects
    return 1.0


UNIT_NAMES = {
    "train": "slice (training or validation)",
    "generate": "sample x DDIM step",
    "metrics_image": "synthetic image or LPIPS pair",
    "metrics_mask": "synthetic sample",
    "utility": "segmenter step",
    "utility_real": "segmenter step",
    "build_cache": "subject",
    "cache_qc": "subject",
    "preprocess_cohort": "subject",
    "preprocess": "subject",
}


def paper_jobs(rule: str, config: Mapping[str, Any], subjects: int) -> list[Job]:
    """The jobs of `rule` in the full grid of `config` (None-free wildcards as the rules name them)."""
    from slimdiff.experiments import expand_runs, pretrained_runs, run_folds

    runs = expand_runs(config)
    pretrained = pretrained_runs(config)
    pairs = run_folds(runs)
    trained = [(r, f) for r, f in pairs if r not in pretrained]
    replicas = range(config["generation"]["replicas"])
    if rule == "train":
        return [Job(rule, f"{r}_fold{f}", r, f) for r, f in trained]
    if rule == "import_pretrained":
        return [Job(rule, f"{r}_fold{f}", r, f) for r, f in pairs if r in pretrained]
    if rule in ("generate", "gather_samples"):
        if rule == "generate" and config["generation"]["job_unit"] == "zbin":
            bins = range(config["data"]["cache"]["z_bins"])
            return [
                Job(rule, f"{r}_fold{f}_replica{k}_zbin{z:02d}", r, f, k, z)
                for r, f in pairs
                for k in replicas
                for z in bins
            ]
        return [Job(rule, f"{r}_fold{f}_replica{k}", r, f, k) for r, f in pairs for k in replicas]
    if rule in ("metrics_image", "metrics_mask", "run_metrics", "utility"):
        return [Job(rule, f"{r}_fold{f}", r, f) for r, f in pairs]
    if rule == "utility_real":
        return [Job(rule, f"fold{f}", fold=f) for f in sorted({f for _, f in pairs})]
    if rule == "preprocess":
        return [Job(rule, f"sub-{i:05d}") for i in range(subjects)]
    if rule == "split_view":
        return [Job(rule, name) for name, protocol in config.get("protocols", {}).items() if protocol.get("split")]
    return [Job(rule, rule)]


# ----------------------------------------------------------------------------------------------------------------
# The report: per rule what the pilot measured, and the full grid's extrapolated cost.

# The paper's cohort when the pilot ran on the generated one: ds004199's 85 patients are preprocessed, the 78 with
# a 3D FLAIR enter the cache (config/paper.yaml's data.cohort). With the user's data the pilot's own counts hold.
PAPER_RAW_SUBJECTS = 85
PAPER_CACHE_SUBJECTS = 78


@dataclass
class Costing:
    """Per rule: the pilot's measurements and the paper grid's extrapolated cost."""

    per_rule: pd.DataFrame
    per_stage: pd.DataFrame
    on_gpu: bool
    notes: list[str]


def _devices(runs: Mapping[str, dict], job_name: str) -> int:
    """training.devices of a train job's run (1 when the job names no run of the config)."""
    run = parse_job("train", job_name).run
    return runs[run]["training"].get("devices", 1) if run in runs else 1


def extrapolate(
    bench: pd.DataFrame,
    pilot_cfg: Mapping[str, Any],
    paper_cfg: Mapping[str, Any],
    pilot_sizes: DataSizes,
    paper_sizes: DataSizes,
    paper_raw_subjects: int,
    requests: Mapping[str, Mapping[str, Any]],
    gpu_rules: Mapping[str, str],
    work_seconds: Mapping[tuple[str, str], float] | None = None,
) -> Costing:
    """Seconds per unit of work measured by the pilot x units of the paper grid (both from resolved configs).

    `work_seconds` ({(rule, job): seconds}) is the part of a job's wall time spent on its units, where the job
    says so (a training's epochs in log.csv): the rest (start-up, export) is then costed once per paper job,
    and the job's CPU time is split in the same ratio. Without it a job's whole time is per unit: an upper bound.
    """
    from slimdiff.experiments import expand_runs

    pilot_runs, paper_runs = expand_runs(pilot_cfg), expand_runs(paper_cfg)
    on_gpu = bool((bench["gpu"] != "").any()) if len(bench) else False
    rows, notes = [], []
    for rule, jobs in bench.groupby("rule", sort=False):
        units = [work_units(rule, parse_job(rule, name), pilot_cfg, pilot_runs, pilot_sizes) for name in jobs["job"]]
        todo = paper_jobs(rule, paper_cfg, paper_raw_subjects)
        paper_units = sum(work_units(rule, j, paper_cfg, paper_runs, paper_sizes) for j in todo)
        wall, cpu = jobs["wall_s"].sum(min_count=1), jobs["cpu_s"].sum(min_count=1)  # NaN: no benchmark file
        per_unit_wall, per_unit_cpu = wall / sum(units), cpu / sum(units)
        overhead_wall = overhead_cpu = 0.0  # per job
        split = [(work_seconds or {}).get((rule, name)) for name in jobs["job"]]
        if split and all(w is not None and w > 0 for w in split) and not math.isnan(wall):
            work_wall = sum(split)
            work_cpu = sum(w * c / max(t, 1e-9) for w, c, t in zip(split, jobs["cpu_s"], jobs["wall_s"], strict=True))
            per_unit_wall, per_unit_cpu = work_wall / sum(units), work_cpu / sum(units)
            overhead_wall, overhead_cpu = (wall - work_wall) / len(jobs), (cpu - work_cpu) / len(jobs)
        if math.isnan(wall):
            notes.append(f"rule {rule}: ran (its log), but has no benchmark directive: not measured")
        section = gpu_rules.get(rule)
        request = requests.get(section, {}).get("mem_mb") if section else None
        peak = jobs["max_rss_mb"].max()
        within = None if request is None or math.isnan(peak) else bool(peak <= request)
        if request is not None and rule == "train":  # mem_mb is per rank: a DDP job asks for devices x it
            asks = [request * _devices(pilot_runs, name) for name in jobs["job"]]
            within = bool((jobs["max_rss_mb"].fillna(0) <= asks).all()) if not math.isnan(peak) else None
            request = asks[int(jobs["max_rss_mb"].fillna(0).to_numpy().argmax())]
        gpu_peak = jobs["gpu_peak_mib"].max()
        rows.append(
            {
                "rule": rule,
                "stage": STAGES.get(rule, "other"),
                "jobs": len(jobs),
                "wall_s": wall,
                "max_wall_s": jobs["wall_s"].max(),
                "cpu_s": cpu,
                "peak_rss_mb": peak,
                "request_mb": request,
                "within_request": within,
                "gpu_peak_mib": gpu_peak,
                "gpu": ", ".join(sorted(set(jobs["gpu"]) - {""})),
                "unit": UNIT_NAMES.get(rule, "job"),
                "pilot_units": sum(units),
                "wall_s_per_unit": per_unit_wall,
                "cpu_s_per_unit": per_unit_cpu,
                "paper_jobs": len(todo),
                "paper_units": paper_units,
                "overhead_s_per_job": overhead_wall,
                "paper_wall_h": (per_unit_wall * paper_units + overhead_wall * len(todo)) / 3600,
                "paper_cpu_h": (per_unit_cpu * paper_units + overhead_cpu * len(todo)) / 3600,
                "gpu_tagged": section is not None,
            }
        )
        if rule not in STAGES:
            notes.append(f"rule {rule}: no work model, costed per job")
    per_rule = pd.DataFrame(rows)
    if per_rule.empty:
        raise PilotError("no benchmark files: run the pilot first (make pilot)")
    per_stage = (
        per_rule.groupby("stage", sort=False)[["wall_s", "cpu_s", "paper_wall_h", "paper_cpu_h"]].sum().reset_index()
    )
    gpu_part = per_rule[per_rule["gpu_tagged"]].groupby("stage", sort=False)["paper_wall_h"].sum()
    per_stage["paper_gpu_h"] = per_stage["stage"].map(gpu_part).fillna(0.0) if on_gpu else math.nan
    return Costing(per_rule, per_stage, on_gpu, notes)


def _fmt(x: Any, digits: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "NO"
    if isinstance(x, float):
        return f"{x:,.{digits}f}"
    return str(x)


def machine_stamp() -> dict[str, Any]:
    """Commit, CPU model, cores, GPU and load: where the numbers were measured."""
    from slimdiff import provenance

    stamp: dict[str, Any] = dict(provenance.machine())
    try:
        stamp["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, cwd=REPO
        )
        stamp["commit"] += " (with uncommitted changes)" if dirty.stdout.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        stamp["commit"] = "unknown"
    try:
        gpus = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True
        )
        stamp["gpu"] = "; ".join(gpus.stdout.strip().splitlines()) or "none"
    except OSError:
        stamp["gpu"] = "none"
    try:
        stamp["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        stamp["load"] = "unknown"
    stamp["date"] = provenance.timestamp()
    return stamp


def render(costing: Costing, stamp: Mapping[str, Any], command: str, rule_check: list[str], extra: str = "") -> str:
    """The pilot report as Markdown: measured per rule, extrapolated per rule and per stage, the rule check."""
    r = costing.per_rule
    lines = [
        "# Pilot: the paper grid at the paper's geometry, measured",
        "",
        f"- command: `{command}`",
        f"- commit {stamp.get('commit')}, {stamp.get('date')}",
        f"- CPU: {stamp.get('cpu')}, {stamp.get('cores')} cores; GPU: {stamp.get('gpu')}; load average at the end "
        f"{stamp.get('load')}",
    ]
    lines += [f"- {extra}"] if extra else []
    lines += [
        "- rule check: "
        + ("every rule of the paper's DAG ran (and nothing else)" if not rule_check else "; ".join(rule_check)),
        "",
        "## Measured per rule",
        "",
        "Wall and CPU time summed over the rule's jobs, peak resident memory of its largest job against the "
        "`cluster` request of GPU-tagged rules (wall time from Snakemake's benchmark files; CPU time and peak "
        "memory the larger of the benchmark's, sampled every 30 s, and the job's own count at its exit, exact), and "
        + (
            "peak GPU memory (torch.cuda.max_memory_allocated at the job's exit)."
            if costing.on_gpu
            else "no GPU memory: this pilot ran on the CPU."
        ),
        "",
        "| rule | jobs | wall s | longest job s | CPU s | peak RSS MB | request MB | within | GPU peak MiB | GPU |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for _, x in r.iterrows():
        lines.append(
            f"| {x['rule']} | {x['jobs']} | {_fmt(x['wall_s'])} | {_fmt(x['max_wall_s'])} | {_fmt(x['cpu_s'])} | "
            f"{_fmt(x['peak_rss_mb'], 0)} | {_fmt(x['request_mb'])} | {_fmt(x['within_request'])} | "
            f"{_fmt(x['gpu_peak_mib'], 0)} | {x['gpu'] or '-'} |"
        )
    lines.append(
        f"| **total** | {int(r['jobs'].sum())} | {_fmt(r['wall_s'].sum())} | | {_fmt(r['cpu_s'].sum())} | "
        f"{_fmt(r['peak_rss_mb'].max(), 0)} | | | | |"
    )
    kind = "GPU" if costing.on_gpu else "CPU"
    lines += [
        "",
        "## The full paper grid, extrapolated",
        "",
        "Time per unit of work = the pilot's time / its units (job start-up included, so an upper bound for "
        "short pilot jobs; for training the epochs' seconds in log.csv, the rest of the job counted once per "
        "job); units of the paper grid from the resolved paper config (runs x folds, replicas, "
        "z-bins x classes x samples, sampler steps, max_epochs x the fold's training and validation slices, "
        "LPIPS pairs, utility arms x seeds x steps). Training counts max_epochs: early stopping ends most runs "
        "sooner.",
        "",
        "| rule | unit | pilot units | wall s / unit | CPU s / unit | start-up s / job | paper jobs | paper units | "
        "paper wall h (pilot's threads) | paper CPU core-h |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for _, x in r.iterrows():
        lines.append(
            f"| {x['rule']} | {x['unit']} | {_fmt(x['pilot_units'], 0)} | {_fmt(x['wall_s_per_unit'], 3)} | "
            f"{_fmt(x['cpu_s_per_unit'], 3)} | {_fmt(x['overhead_s_per_job']) if x['overhead_s_per_job'] else '-'} | "
            f"{x['paper_jobs']} | {_fmt(x['paper_units'], 0)} | "
            f"{_fmt(x['paper_wall_h'], 2)} | {_fmt(x['paper_cpu_h'], 2)} |"
        )
    s = costing.per_stage
    lines += [
        "",
        f"Per stage ({kind}{'; GPU-hours: the GPU-tagged rules, one GPU per job' if costing.on_gpu else ''}):",
        "",
        "| stage | pilot wall s | pilot CPU s | paper wall h | paper CPU core-h | paper GPU h |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for _, x in s.iterrows():
        lines.append(
            f"| {x['stage']} | {_fmt(x['wall_s'])} | {_fmt(x['cpu_s'])} | {_fmt(x['paper_wall_h'], 1)} | "
            f"{_fmt(x['paper_cpu_h'], 1)} | {_fmt(x['paper_gpu_h'], 1)} |"
        )
    lines.append(
        f"| **total** | {_fmt(s['wall_s'].sum())} | {_fmt(s['cpu_s'].sum())} | {_fmt(s['paper_wall_h'].sum(), 1)} | "
        f"{_fmt(s['paper_cpu_h'].sum(), 1)} | {_fmt(s['paper_gpu_h'].sum(), 1) if costing.on_gpu else '-'} |"
    )
    lines += [""] + [f"- {n}" for n in costing.notes]
    return "\n".join(lines).rstrip() + "\n"


# The README's cost blocks, one per kind of machine (a CPU-only run, a GPU run), each between two HTML comments:
# `slimdiff-pilot report --readme README.md` writes the block of the kind it measured, so that the numbers on the
# front page come from a run and carry its commit and machine, never re-typed.
README_BLOCKS = {False: "pilot-cost-cpu", True: "pilot-cost-gpu"}


def human_hours(hours: float) -> str:
    """Hours in the unit a person plans in: hours, days or years."""
    if hours >= 2 * 24 * 365:
        return f"{hours / (24 * 365):,.0f} years"
    if hours >= 48:
        return f"{hours / 24:,.0f} days"
    return f"{hours:,.1f} h"


def _hours(x: float) -> str:
    return _fmt(float(x), 0 if x >= 10 else 1)


def readme_block(
    costing: Costing, stamp: Mapping[str, Any], command: str, report_link: str, precision: str = ""
) -> str:
    """The paper grid's cost per stage, short enough for the README, stamped with where it was measured."""
    order = {stage: i for i, stage in enumerate(("data", "train", "generate", "metrics", "utility", "figures"))}
    s = costing.per_stage.sort_values("stage", key=lambda col: col.map(order).fillna(len(order)), kind="stable")
    where = f"{stamp.get('cpu')}, {stamp.get('cores')} cores, " + (
        f"GPU {stamp.get('gpu')}" if costing.on_gpu else "no GPU"
    )
    intro = (
        f"Measured by `{command}` at commit {stamp.get('commit')} ({str(stamp.get('date', ''))[:10]}) on {where} "
        f"([its report]({report_link})). The full paper grid"
        + (f" in the precision the pilot ran ({precision})" if precision else "")
        + ", one job at a time:"
    )
    gpu_col = costing.on_gpu
    lines = [
        *textwrap.wrap(intro, 116, break_long_words=False, break_on_hyphens=False),
        "",
        "| stage | hours | CPU core-hours |" + (" GPU-hours |" if gpu_col else ""),
        "|---|---:|---:|" + ("---:|" if gpu_col else ""),
    ]
    for _, x in s.iterrows():
        gpu = f" {_hours(x['paper_gpu_h'])} |" if gpu_col else ""
        lines.append(f"| {x['stage']} | {_hours(x['paper_wall_h'])} | {_hours(x['paper_cpu_h'])} |{gpu}")
    wall, cpu = s["paper_wall_h"].sum(), s["paper_cpu_h"].sum()
    gpu = f" {_hours(s['paper_gpu_h'].sum())} ({human_hours(s['paper_gpu_h'].sum())}) |" if gpu_col else ""
    lines.append(f"| **total** | {_hours(wall)} ({human_hours(wall)}) | {_hours(cpu)} |{gpu}")
    return "\n".join(lines) + "\n"


def write_readme_block(path: str | Path, name: str, body: str) -> None:
    """Replace what lies between `<!-- name ... -->` and `<!-- /name -->` in `path` (each on a line of its own)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise PilotError(f"{path}: cannot read it ({err.strerror})") from err
    block = re.compile(rf"^<!-- {re.escape(name)}\b.*?-->\n(.*?)^<!-- /{re.escape(name)} -->$", re.S | re.M)
    found = block.search(text)
    if not found:
        raise PilotError(f"{path}: no '<!-- {name} -->' ... '<!-- /{name} -->' block to write the pilot's cost into")
    write_text(path, text[: found.start(1)] + body.rstrip("\n") + "\n" + text[found.end(1) :])


# ----------------------------------------------------------------------------------------------------------------
# The checks and the command line (`slimdiff-pilot`, what `make pilot` calls).


def paper_dag_text(paper_file: str | Path, raw_dir: str | Path, scratch: str | Path) -> str:
    """The dry run (dag_text) of the paper grid over the cohort in `raw_dir`: paper_file with only data.raw_dir
    set, in the folder `scratch` (the paper's own raw_dir need not exist)."""
    scratch = Path(scratch)
    overlay = scratch / "paper.yaml"
    body = {"extends": str(Path(paper_file).resolve()), "data": {"raw_dir": str(Path(raw_dir).resolve())}}
    write_text(overlay, yaml.safe_dump(body, sort_keys=False))
    return dag_text(overlay, scratch)


def paper_dag_jobs(paper_file: str | Path, raw_dir: str | Path, scratch: str | Path) -> dict[str, int]:
    """The paper grid's DAG ({rule: jobs}) over the cohort in `raw_dir` (see paper_dag_text)."""
    return parse_job_stats(paper_dag_text(paper_file, raw_dir, scratch))


def rule_check(workdir: str | Path, run_config: str | Path, paper_file: str | Path) -> list[str]:
    """Problems (none: empty) with what the pilot in `workdir` ran: its DAG and the rules that actually ran must
    both equal the paper DAG's rules (plus PAPER_OPTIONAL_RULES)."""
    workdir = Path(workdir)
    config = resolved(run_config)
    raw_dir = Path(config["data"]["raw_dir"])
    raw_dir = raw_dir if raw_dir.is_absolute() else workdir / raw_dir
    with ThreadPoolExecutor(2) as pool:  # two Snakemake dry runs side by side (the paper's takes tens of seconds)
        paper_dag = pool.submit(paper_dag_jobs, paper_file, raw_dir, workdir / "paper-dag")
        pilot_dag = pool.submit(dag_jobs, run_config, workdir)
        want = expected_pilot_rules(job_rules(paper_dag.result()))
        problems = rule_set_problems(job_rules(pilot_dag.result()), want, "the pilot's DAG")
    problems += rule_set_problems(executed_rules(workdir), want, "what the pilot ran")
    return problems


def training_seconds(workdir: str | Path, bench: pd.DataFrame) -> dict[tuple[str, str], float]:
    """{("train", job): seconds of its epochs} from each training's log.csv (steps and validation, without the
    job's start-up and export)."""
    out = {}
    for name in bench.loc[bench["rule"] == "train", "job"]:
        job = parse_job("train", name)
        log_csv = Path(workdir) / TRAIN_DIR.format(run=job.run, fold=job.fold) / "log.csv"
        if job.run is not None and log_csv.is_file():
            seconds = pd.read_csv(log_csv)["seconds"].sum()
            if seconds > 0:
                out[("train", name)] = float(seconds)
    return out


def report(
    workdir: str | Path,
    run_config: str | Path,
    paper_file: str | Path,
    command: str,
    out: str | Path | None = None,
    docs: str | Path | None = None,
    note: str = "",
    paper_subjects: int | None = None,
    paper_raw_subjects: int | None = None,
    readme: str | Path | None = None,
) -> tuple[str, list[str]]:
    """Write the pilot report (workdir/report.md, and `docs` when given) and, when `readme` is given and every
    rule ran, the README's cost block for this kind of machine; returns the report and the rule check."""
    workdir = Path(workdir)
    pilot_cfg, paper_cfg = resolved(run_config), resolved(paper_file)
    bench = read_benchmarks(workdir)
    if bench.empty:
        raise PilotError(f"{workdir}: no benchmark files; run the pilot first (make pilot)")
    pilot_sizes = cache_sizes(workdir / "results" / "cache")
    raw_dir = Path(pilot_cfg["data"]["raw_dir"])
    generated = (raw_dir if raw_dir.is_absolute() else workdir / raw_dir).joinpath(COHORT_STAMP).is_file()
    n_pre = int((bench["rule"] == "preprocess").sum())
    if generated:  # the generated cohort: scale to the paper's
        cache_n, raw_n = paper_subjects or PAPER_CACHE_SUBJECTS, paper_raw_subjects or PAPER_RAW_SUBJECTS
        extra = (
            f"input: the generated cohort ({n_pre} subjects); extrapolated to {raw_n} subjects preprocessed and "
            f"{cache_n} in the cache (ds004199's patients, the 3D FLAIRs)"
        )
    else:  # the user's cohort: its own counts
        cache_n, raw_n = paper_subjects or pilot_sizes.subjects, paper_raw_subjects or max(n_pre, 1)
        extra = f"input: {pilot_cfg['data']['raw_dir']} ({raw_n} subjects preprocessed, {cache_n} in the cache)"
    extra += f"; {note}" if note else ""
    extra += f"\n- {precision_line(pilot_cfg)}\n- {ddp_line(pilot_cfg, paper_cfg)}"
    if (bench["gpu"] != "").any():
        extra += f"\n- {sharing_line(pilot_cfg)}"
    costing = extrapolate(
        bench,
        pilot_cfg,
        paper_cfg,
        pilot_sizes,
        pilot_sizes.scaled(cache_n),
        raw_n,
        paper_cfg["cluster"],
        gpu_sections(),
        training_seconds(workdir, bench),
    )
    problems = rule_check(workdir, run_config, paper_file)
    stamp = machine_stamp()
    text = render(costing, stamp, command, problems, extra)
    out = Path(out) if out else workdir / "report.md"
    write_text(out, text)
    write_text(workdir / "report_rules.csv", costing.per_rule.to_csv(index=False))
    if docs:
        write_text(docs, text)
    if readme and not problems:  # a pilot that missed rules does not speak for the paper grid on the front page
        page = Path(docs) if docs else out
        link = Path(os.path.relpath(page.resolve(), Path(readme).resolve().parent)).as_posix()
        precision = (
            f"training {pilot_cfg['training']['precision']}, sampling {pilot_cfg['generation']['compute_dtype']}"
        )
        block = readme_block(costing, stamp, command, link, precision)
        write_readme_block(readme, README_BLOCKS[costing.on_gpu], block)
    elif readme:
        print(f"slimdiff-pilot: {readme} left as it was: the rule check failed", file=sys.stderr)
    return text, problems


def main(argv: list[str] | None = None) -> int:
    """slimdiff-pilot prepare | check | report (see docs/how-to/pilot.md)."""
    from slimdiff.cli._common import run

    p = argparse.ArgumentParser(prog="slimdiff-pilot", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the overlay that runs and, without --raw-dir, the cohort")
    prep.add_argument("--config", default="config/pilot.yaml")
    prep.add_argument("--paper", default="config/paper.yaml", help="brain extraction for --raw-dir comes from it")
    prep.add_argument("--workdir", default=str(PILOT_DIR))
    prep.add_argument("--raw-dir", default=None, help="your cohort (ds004199 layout) instead of the generated one")
    prep.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    prep.add_argument("--mem-mb", type=int, default=None, help="memory the jobs may hold at once (PILOT_MEM_MB)")
    for name, text in (("check", "compare the rules the pilot ran with the paper DAG's"), ("report", "write it")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--workdir", default=str(PILOT_DIR))
        q.add_argument("--paper", default="config/paper.yaml")
        if name == "report":
            q.add_argument("--out", default=None, help="default: WORKDIR/report.md")
            q.add_argument("--docs", default=None, help="also write the report here (docs/results/pilot.md)")
            q.add_argument("--readme", default=None, help="write the cost per stage into this file's pilot-cost block")
            q.add_argument("--command", default="make pilot", dest="cmd")
            q.add_argument("--note", default="", help="a line for the header (e.g. other load on the machine)")
            q.add_argument("--paper-subjects", type=int, default=None)
            q.add_argument("--paper-raw-subjects", type=int, default=None)
    args = p.parse_args(argv)
    status = {"failed": False}

    def body() -> None:
        if args.command == "prepare":
            prepare(args.config, args.workdir, args.raw_dir, args.paper, args.threads, args.mem_mb)
            return
        run_config = Path(args.workdir) / RUN_CONFIG
        if args.command == "check":
            problems = rule_check(args.workdir, run_config, args.paper)
        else:
            text, problems = report(
                args.workdir,
                run_config,
                args.paper,
                args.cmd,
                args.out,
                args.docs,
                args.note,
                args.paper_subjects,
                args.paper_raw_subjects,
                args.readme,
            )
            print(text)
        for line in problems:
            print(f"slimdiff-pilot: rule check failed: {line}", file=sys.stderr)
        status["failed"] = bool(problems)
        if not problems:
            print("slimdiff-pilot: every rule of the paper's DAG ran, and no other")

    code = run(body, "slimdiff-pilot")
    return code or (1 if status["failed"] else 0)


if __name__ == "__main__":
    sys.exit(main())
