"""The pilot (config/pilot.yaml, slimdiff.pilot): it runs the paper DAG's rules at the paper's geometry with
counts changed only, and its report's arithmetic gives known answers on made-up benchmark files."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import REPO

from slimdiff import pilot
from slimdiff.config import validate_config
from slimdiff.experiments import expand_runs, parse_run, pretrained_runs, run_folds
from slimdiff.generation.sampling import compute_dtype_for
from slimdiff.metrics.pairing import MIN_PAIRS, variant_pairs
from slimdiff.training.runner import resolve_precision

PAPER = REPO / "config" / "paper.yaml"
PILOT = REPO / "config" / "pilot.yaml"
PILOT_CI = REPO / "config" / "pilot-ci.yaml"  # the reduced form CI runs

# What the pilot may change: counts (and its input). Everything else must be the paper's, key by key.
COUNT_KEYS = (
    "training.max_epochs",
    "training.steps_per_epoch",
    "training.max_steps",
    "training.val_max_slices",
    "sampler.steps",
    "generation.replicas",
    "generation.n_per_condition",
    "generation.job_unit",  # same samples in fewer processes
    "training.devices",  # one device: the paper's 2-device DDP needs 2 GPUs (or twice the memory on a CPU)
    "metrics.kid_subsets",
    "metrics.zbin_kid_subsets",
    "metrics.lpips_pairs",
    "metrics.zbin_lpips_pairs",
    "metrics.mmd_subsets",
    "utility.seeds",
    "utility.steps",
)
INPUT_KEYS = ("data.raw_dir", "data.source", "data.synthetic.", "preprocess.brain_extraction.backend")
REPORT_KEYS = ("figures.report_pages",)  # the pilot report on the Snakemake report's front page
# What the pilot's jobs ask the scheduler for: memory it measured and threads, not the method (the report still
# checks each peak against the paper's requests).
SCHEDULER_KEYS = ("cluster.train.mem_mb", "cluster.generate.mem_mb", "cluster.metrics.mem_mb")
SCHEDULER_KEYS += ("training.threads", "metrics.threads", "utility.threads")
# The paper's precision as `auto` resolves on a GPU, pinned so that a CPU pilot computes in it too.
PRECISION_KEYS = ("training.precision", "generation.compute_dtype")


def _count_key(key: str) -> str:
    """protocols.<name>.training.max_epochs -> training.max_epochs: a protocol's counts are counts too."""
    parts = key.split(".")
    return ".".join(parts[2:]) if parts[0] == "protocols" else key


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def _fake_cohort(folder: Path, subjects: int = 4) -> Path:
    """A raw BIDS folder as the DAG needs it to be listed (participants.tsv, sub-* folders; no volumes)."""
    ids = [f"sub-{i:05d}" for i in range(1, subjects + 1)]
    for sid in ids:
        (folder / sid / "anat").mkdir(parents=True)
    split = ["train"] * (subjects - 1) + ["test"]
    pd.DataFrame({"participant_id": ids, "split": split}).to_csv(folder / "participants.tsv", sep="\t", index=False)
    return folder


def test_pilot_changes_counts_only():
    """Geometry, model widths, batch, objectives, sampler kind, folds and metric definitions are the paper's."""
    paper, ours = pilot.resolved(PAPER), pilot.resolved(PILOT)
    a, b = (
        _flat({k: v for k, v in paper.items() if k != "experiments"}),
        _flat({k: v for k, v in ours.items() if k != "experiments"}),
    )
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    free = INPUT_KEYS + REPORT_KEYS + SCHEDULER_KEYS
    allowed = [k for k in changed if _count_key(k) in COUNT_KEYS or k in PRECISION_KEYS or k.startswith(free)]
    assert changed == allowed, f"pilot.yaml changes more than counts: {sorted(set(changed) - set(allowed))}"
    # the precision is the paper's as it resolves on a GPU, the paper's device
    assert ours["training"]["precision"] == resolve_precision(paper["training"]["precision"], "cuda")
    gen = paper["generation"]
    assert ours["generation"]["compute_dtype"] == compute_dtype_for(gen["dtype"], "cuda", gen["compute_dtype"])
    assert ours["data"]["cache"]["roi_size"] == [160, 160, 160] and ours["data"]["cache"]["z_bins"] == 30
    assert (
        ours["sampler"]["spacing"] == paper["sampler"]["spacing"] and ours["sampler"]["eta"] == paper["sampler"]["eta"]
    )


def test_pilot_runs_cover_the_papers_code_paths():
    """Every prediction type, variant, self-conditioning level, Lp, loss override and training setting of the
    paper's runs is among the pilot's; each Regime B comparison of the paper has >= 2 paired folds in the pilot;
    an imported model is among them."""
    paper, ours = pilot.resolved(PAPER), pilot.resolved(PILOT)
    paper_runs, our_runs = expand_runs(paper), expand_runs(ours)

    def paths(runs: dict) -> dict[str, set]:
        seen: dict[str, set] = {}
        for name, cfg in runs.items():
            parsed = parse_run(name)
            for key in ("prediction", "variant", "protocol"):
                seen.setdefault(key, set()).add(parsed[key])
            seen.setdefault("self_conditioning", set()).add(
                cfg["self_conditioning"]["probability"] if cfg["self_conditioning"]["enabled"] else 0.0
            )
            seen.setdefault("p", set()).add(cfg["loss"]["p"])
            learned = {"loss": cfg["loss"], "model": cfg["model"], "batch": cfg["training"]["batch_size"]}
            for key, value in _flat(learned).items():
                seen.setdefault(key, set()).add(repr(value))
        return seen

    have, want = paths(our_runs), paths(paper_runs)
    missing = {k: sorted(map(str, v - have.get(k, set()))) for k, v in want.items() if v - have.get(k, set())}
    assert not missing, f"code paths of the paper's runs the pilot does not run: {missing}"
    paper_pairs, our_pairs = variant_pairs(run_folds(paper_runs)), variant_pairs(run_folds(our_runs))
    for shared, variants in paper_pairs.items():
        for variant, pair in variants.items():
            if len(pair["paired_folds"]) >= MIN_PAIRS:
                assert len(our_pairs[shared][variant]["paired_folds"]) >= MIN_PAIRS, (shared, variant)
    assert pretrained_runs(ours), "the pilot imports a model"


def test_a_cpu_without_native_bf16_runs_the_pilot_in_float32_at_a_cpu_sampling_batch(tmp_path, capsys):
    config = pilot.resolved(PILOT)
    assert pilot.cpu_overlay(config, has_cuda=True, native_bf16=False) == {}  # a GPU: the paper's settings
    native = pilot.cpu_overlay(config, has_cuda=False, native_bf16=True)
    assert native == {"generation": {"batch_size": pilot.CPU_SAMPLING_BATCH["bfloat16"]}}  # bf16 kept
    fallback = pilot.cpu_overlay(config, has_cuda=False, native_bf16=False)
    assert fallback == {
        "training": {"precision": "32-true", "channels_last": False},  # float32 trains faster contiguous on a CPU
        "generation": {"compute_dtype": "float32", "batch_size": pilot.CPU_SAMPLING_BATCH["float32"]},
        "cluster": {  # a float32 training needs 15 GB, a sampling job beside it 1.6 GB
            "train": {"mem_mb": pilot.FLOAT32_TRAIN_MEM_MB},
            "generate": {"mem_mb": pilot.FLOAT32_GENERATE_MEM_MB},
        },
    }
    assert pilot.FLOAT32_TRAIN_MEM_MB > config["cluster"]["train"]["mem_mb"]
    assert pilot.FLOAT32_TRAIN_MEM_MB + pilot.FLOAT32_GENERATE_MEM_MB < 0.9 * 23_000  # side by side in 24 GB
    assert max(pilot.CPU_SAMPLING_BATCH.values()) < config["generation"]["batch_size"]  # only ever smaller
    paper = pilot.resolved(PAPER)  # precision auto: float32 on a CPU already; the sampling batch and request change
    assert pilot.cpu_overlay(paper, has_cuda=False, native_bf16=True) == {
        "training": {"channels_last": False},
        "generation": {"batch_size": pilot.CPU_SAMPLING_BATCH["float32"]},
        "cluster": {"generate": {"mem_mb": pilot.FLOAT32_GENERATE_MEM_MB}},
    }
    contiguous = {**config, "training": {**config["training"], "channels_last": False}}  # the layout aside
    assert pilot.cpu_overlay(contiguous, has_cuda=False, native_bf16=False)["generation"]["compute_dtype"] == "float32"
    float32 = {**config, "training": {**config["training"], "precision": "32-true"}}
    assert pilot.cpu_overlay(float32, has_cuda=False, native_bf16=True) == {
        "training": {"channels_last": False},  # a CPU trains float32 contiguous, and samples in its native bf16
        "generation": {"batch_size": pilot.CPU_SAMPLING_BATCH["bfloat16"]},
    }
    line = pilot.precision_line(config)
    assert "training bf16-mixed (channels_last), sampling bfloat16 at batch 32" in line

    import torch

    from slimdiff import device

    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as mp:
        mp.setattr(device, "cpu_has_native_bf16", lambda: False)
        mp.setattr(torch.cuda, "is_available", lambda: False)
        raw = _fake_cohort(tmp_path / "raw")
        run_config = pilot.prepare(PILOT, tmp_path / "pilot", raw_dir=raw, paper_file=PAPER, mem_mb=20_000)
        out = capsys.readouterr().out
        ran = pilot.resolved(run_config)
        # 2 float32 ranks (2 x 16 GB) do not fit in 20 GB: the camera-ready runs train on one device here ...
        assert ran["protocols"]["camera_ready"]["training"]["devices"] == 1
        assert "pilot DDP: protocol camera_ready trains on one device, not the paper's 2" in out
        # ... and on the paper's 2 ranks where they do
        again = pilot.prepare(PILOT, tmp_path / "pilot2", raw_dir=raw, paper_file=PAPER, mem_mb=40_000)
        assert pilot.resolved(again)["protocols"]["camera_ready"]["training"]["devices"] == 2
        assert "protocol camera_ready trains on 2 devices as the paper's" in capsys.readouterr().out
    assert "float32 instead of the paper's GPU precision" in out and "pilot sampling batch: 4" in out
    assert (ran["training"]["precision"], ran["generation"]["compute_dtype"]) == ("32-true", "float32")
    assert (ran["generation"]["batch_size"], ran["cluster"]["train"]["mem_mb"]) == (4, pilot.FLOAT32_TRAIN_MEM_MB)
    assert "pilot memory layout: training in contiguous tensors" in out
    assert (ran["training"]["channels_last"], ran["generation"]["channels_last"]) == (False, True)


def test_the_camera_ready_runs_train_with_the_papers_ddp_where_the_machine_holds_its_ranks():
    """The pilot keeps the paper's world size (2 ranks of batch 16) where 2 ranks fit: 2 GPUs, or on a CPU twice
    the per-rank training request in the pilot's memory; one device elsewhere, and the report says which."""
    config, paper = pilot.resolved(PILOT), pilot.resolved(PAPER)
    assert paper["protocols"]["camera_ready"]["training"]["devices"] == 2
    assert config["protocols"]["camera_ready"]["training"]["devices"] == 2  # the overlay leaves it to the machine
    one = {"protocols": {"camera_ready": {"training": {"devices": 1}}}}
    per_rank = config["cluster"]["train"]["mem_mb"]
    kept, lines = pilot.ddp_overlay(config, gpus=2, mem_mb=None)
    assert kept == {} and lines == ["protocol camera_ready trains on 2 devices as the paper's (2 GPU(s) visible)"]
    assert pilot.ddp_overlay(config, gpus=1, mem_mb=10**6)[0] == one  # one rank per GPU: memory does not help
    assert pilot.ddp_overlay(config, gpus=0, mem_mb=2 * per_rank)[0] == {}
    short, lines = pilot.ddp_overlay(config, gpus=0, mem_mb=2 * per_rank - 1)
    assert short == one and f"2 CPU ranks (gloo) x {per_rank} MB = {2 * per_rank} MB" in lines[0]
    assert pilot.ddp_overlay(config, gpus=0, mem_mb=None)[0] == one  # memory unknown: not risked
    assert pilot.ddp_line(config, paper) == "DDP: camera_ready on 2 ranks as the paper's"
    config["protocols"]["camera_ready"]["training"]["devices"] = 1
    assert pilot.ddp_line(config, paper).startswith("DDP: camera_ready on 1 device, not the paper's 2")


def test_on_a_gpu_the_pilots_short_jobs_share_each_device(tmp_path, capsys, monkeypatch):
    """One job per device would queue the pilot's ~45 GPU jobs, mostly start-up, behind each other on one GPU:
    prepare lets k share a device, one per 16 GB of its memory and one per cpus_per_gpu cores, and the report
    says so (a shared device's wall times are upper bounds)."""
    import types

    import torch

    from slimdiff.gpu_lease import JOBS_PER_DEVICE_ENV

    monkeypatch.delenv(JOBS_PER_DEVICE_ENV, raising=False)
    config = pilot.resolved(PILOT)
    assert config["cluster"]["train"]["cpus_per_gpu"] == 4
    h100 = 81_559  # MB: one H100 of 80 GB
    assert pilot.gpu_overlay(config, [h100], cores=16)[0] == {"gpu": {"jobs_per_device": 4}}  # 16 cores / 4
    assert pilot.gpu_overlay(config, [h100], cores=64)[0] == {"gpu": {"jobs_per_device": 5}}  # 80 GB / 16 GB
    assert pilot.gpu_overlay(config, [24_576], cores=64)[0] == {"gpu": {"jobs_per_device": 1}}  # a 24 GB card
    assert pilot.gpu_overlay(config, [12_000], cores=2)[0] == {"gpu": {"jobs_per_device": 1}}  # never 0
    both, line = pilot.gpu_overlay(config, [h100, 40_960], cores=16)  # the smallest device, cores shared by both
    assert both == {"gpu": {"jobs_per_device": 2}} and "40,960 MB on the smallest of 2 device(s)" in line
    monkeypatch.setenv(JOBS_PER_DEVICE_ENV, "3")
    assert pilot.gpu_overlay(config, [24_576], cores=2) == (
        {"gpu": {"jobs_per_device": 3}},
        f"3 job(s) per device at once (${JOBS_PER_DEVICE_ENV})",
    )
    monkeypatch.setenv(JOBS_PER_DEVICE_ENV, "none")
    with pytest.raises(ValueError, match=JOBS_PER_DEVICE_ENV):
        pilot.gpu_overlay(config, [h100], cores=16)
    monkeypatch.delenv(JOBS_PER_DEVICE_ENV)

    assert pilot.sharing_line(config) == "GPU jobs: one per device"
    config["gpu"]["jobs_per_device"] = 4
    assert pilot.sharing_line(config).startswith("GPU jobs: up to 4 per device at once")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what prepare writes on an 80 GB GPU, 16 cores
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80 * 2**30))
    monkeypatch.setattr(pilot, "_usable_cores", lambda: 16)
    run_config = pilot.prepare(PILOT, tmp_path / "pilot", raw_dir=_fake_cohort(tmp_path / "raw"), paper_file=PAPER)
    ran = pilot.resolved(run_config)
    assert (
        ran["gpu"]["jobs_per_device"] == 4
        and "pilot GPU sharing: 4 job(s) per device at once" in capsys.readouterr().out
    )
    assert (ran["training"]["precision"], ran["generation"]["batch_size"]) == ("bf16-mixed", 32)  # the paper's


def test_a_ddp_trainings_memory_is_checked_per_rank(tmp_path):
    """A 2-rank training holding 1.5 x the per-rank request is within its request (2 x it); one rank is not."""
    config = validate_config(
        {
            "training": {"batch_size": 4, "max_epochs": 1, "steps_per_epoch": 1, "devices": 2},
            "experiments": {"prediction": ["x0"], "folds": [0]},
            "cluster": {"train": {"mem_mb": 1000}},
        }
    )
    work = tmp_path / "w"
    _bench(work, "train", "x0_lp1.5_sc0.5_fold0", wall=20.0, cpu=40.0, rss=1500)
    sizes = pilot.DataSizes(2, {0: 40.0}, {0: 8.0})
    bench = pilot.read_benchmarks(work)
    args = (config, config, sizes, sizes, 2, config["cluster"], {"train": "train"})
    row = pilot.extrapolate(bench, *args).per_rule.set_index("rule").loc["train"]
    assert (row["request_mb"], bool(row["within_request"])) == (2000, True)
    config["training"]["devices"] = 1
    row = pilot.extrapolate(bench, *args).per_rule.set_index("rule").loc["train"]
    assert (row["request_mb"], bool(row["within_request"])) == (1000, False)


def test_cpu_benchmark_page_names_the_fastest_sampling_batch_and_the_pilots():
    """benchmarks/cpu_bf16.py's page (its timing runs the paper's model: on demand only), on made-up times."""
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("cpu_bf16", REPO / "benchmarks" / "cpu_bf16.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = argparse.Namespace(threads=1, batch=4, command="python benchmarks/cpu_bf16.py --sampling-batches 4 8")
    times = {"parameters": 10, "sampling_float32": 2.0, "training_float32": 6.0, "pilot_dtype": "float32"}
    text = bench.page({**times, "by_batch": {4: 1.5, 8: 1.25, 32: 3.0}}, args, ["float32"])
    assert "| seconds per sample, batch 4 | float32 |\n|---|---:|\n| sampling | 2.000 |" in text
    assert "| 8 | 1.250 |" in text and "Fastest here: batch 8." in text
    assert f"samples at batch {pilot.CPU_SAMPLING_BATCH['float32']} in float32" in text
    both = {**times, "sampling_bfloat16": 0.5, "training_bfloat16": 3.0, "by_batch": {}}
    text = bench.page(both, args, ["float32", "bfloat16"])
    assert "| sampling | 2.000 | 0.500 | 4.0 |" in text and "Fastest" not in text
    layouts = {
        "matmul_gflops": 100.0,
        "threads": 1,
        "gflop": {"sampling": 110.0, "training": 330.0},
        "channels_last": {"sampling": 1.1, "training": 6.6},
        "contiguous": {"sampling": 1.375, "training": 5.5},
    }
    text = bench.page({**times, "by_batch": {}, "layouts": layouts}, args, ["float32"])
    assert "| sampling | 110.0 | channels_last | 1.100 | 100.0 | 100% |" in text
    assert "| training | 330.0 | contiguous | 5.500 | 60.0 | 60% |" in text
    assert "Training ran fastest here in contiguous" in text
    assert "the pilot trains in contiguous in float32" in text


def test_rule_check_compares_both_the_pilots_dag_and_what_ran_with_the_papers(tmp_path, monkeypatch):
    """The two dry runs (run side by side) and the benchmark files, each against the paper DAG's rules plus the
    optional import; made-up rule sets stand in for Snakemake's."""
    run_config = tmp_path / "pilot" / pilot.RUN_CONFIG
    run_config.parent.mkdir()
    run_config.write_text(yaml.safe_dump({"extends": str(PILOT)}))
    seen = {}

    def paper_dag_jobs(paper_file, raw_dir, scratch):
        seen["paper"] = (Path(paper_file), Path(raw_dir), Path(scratch))
        return {"train": 2, "generate": 9, "all": 1}

    monkeypatch.setattr(pilot, "paper_dag_jobs", paper_dag_jobs)
    monkeypatch.setattr(pilot, "dag_jobs", lambda config, workdir: {"train": 1, "import_pretrained": 1, "all": 1})
    monkeypatch.setattr(pilot, "executed_rules", lambda workdir: {"train", "generate", "import_pretrained", "x"})
    problems = pilot.rule_check(run_config.parent, run_config, PAPER)
    assert problems == [
        "the pilot's DAG lacks generate",
        "what the pilot ran has rules the paper grid does not: x",
    ]
    assert seen["paper"] == (PAPER, run_config.parent / "raw", run_config.parent / "paper-dag")


def test_rule_set_problems_names_both_directions():
    assert pilot.rule_set_problems({"a", "b"}, {"a", "b"}, "x") == []
    problems = pilot.rule_set_problems({"a", "c"}, {"a", "b"}, "the pilot")
    assert problems == ["the pilot lacks b", "the pilot has rules the paper grid does not: c"]


def test_parse_job_stats_and_job_names():
    text = "Job stats:\njob        count\n-------  -------\ntrain          3\nall            1\ntotal          4\n\n"
    assert pilot.parse_job_stats(text) == {"train": 3, "all": 1}
    assert pilot.job_rules({"train": 3, "all": 1}) == {"train"}
    job = pilot.parse_job("generate", "x0_lp1.5_sc0.5-decoupled_fold1_replica2_zbin07")
    assert (job.run, job.fold, job.replica, job.zbin) == ("x0_lp1.5_sc0.5-decoupled", 1, 2, 7)
    assert pilot.parse_job("utility_real", "fold2").fold == 2 and pilot.parse_job("preprocess", "sub-00001").run is None
    with pytest.raises(pilot.PilotError, match="Job stats"):
        pilot.parse_job_stats("nothing")


def _bench(workdir: Path, rule: str, job: str, wall: float, cpu: float, rss: float, gpu_line: str = "") -> None:
    folder = workdir / "results" / "benchmarks" / rule
    folder.mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (folder / f"{job}.tsv").write_text(header + f"{wall}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu}\n")
    logs = workdir / "results" / "logs" / rule
    logs.mkdir(parents=True, exist_ok=True)
    (logs / f"{job}.log").write_text(f"2026-01-01 INFO slimdiff: rule {rule}\n{gpu_line}")


def test_cpu_time_and_peak_memory_are_the_larger_of_the_benchmarks_and_the_jobs_own(tmp_path):
    """Snakemake samples a job every 30 s: the usage line its log ends with (rule_log) is exact where that is
    short, and the benchmark's own numbers stay where they are larger (or where a job wrote no line)."""
    usage = "2026-01-01 INFO slimdiff: resource usage: CPU {} s, peak RSS {} MB\n"
    work = tmp_path / "w"
    _bench(work, "train", "a_fold0", wall=100.0, cpu=70.0, rss=900, gpu_line=usage.format("95.50", "1200.0"))
    _bench(work, "generate", "a_fold0_replica0", wall=10.0, cpu=9.0, rss=300, gpu_line=usage.format("8.00", "250.0"))
    _bench(work, "figures", "figures", wall=3.0, cpu="NA", rss="NA", gpu_line=usage.format("2.25", "180.5"))
    _bench(work, "baseline", "baseline", wall=5.0, cpu=4.0, rss=200)
    got = pilot.read_benchmarks(work).set_index("rule")[["wall_s", "cpu_s", "max_rss_mb"]]
    assert got.loc["train"].tolist() == [100.0, 95.5, 1200.0]
    assert got.loc["generate"].tolist() == [10.0, 9.0, 300.0]
    assert got.loc["figures"].tolist() == [3.0, 2.25, 180.5]  # the benchmark collected nothing (NA)
    assert got.loc["baseline"].tolist() == [5.0, 4.0, 200.0]


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads the resident memory from Linux's /proc")
def test_a_job_logs_its_own_cpu_time_and_peak_memory(caplog):
    """The line slimdiff.rule_log writes at a job's exit, from the kernel's counts: at least the CPU time this
    process has used and the memory it holds (here after touching 256 MB)."""
    import logging
    import time

    from slimdiff import rule_log

    block = bytearray(256 * 2**20)
    block[:: 2**12] = b"\x01" * (len(block) // 2**12)  # a byte per page: all of it resident
    status = Path("/proc/self/status")
    resident_mb = next(int(x.split()[1]) for x in status.read_text().splitlines() if x.startswith("VmRSS")) / 2**10
    cpu_s = time.process_time()
    with caplog.at_level(logging.INFO, logger="slimdiff"):
        rule_log._log_usage()
    m = pilot._USAGE.search(caplog.text)
    assert m is not None, caplog.text
    assert float(m[1]) >= cpu_s - 0.01 and float(m[2]) >= max(256, resident_mb * 0.99)
    del block


def test_report_extrapolates_known_answers(tmp_path):
    """Made-up benchmarks with known times: seconds per unit x the paper config's units, checked by hand."""
    base = {
        "data": {"cache": {"z_bins": 3}},
        "generation": {"replicas": 1, "n_per_condition": 1, "classes": [0, 1], "job_unit": "replica"},
        "sampler": {"steps": 2},
        "training": {"batch_size": 4, "max_epochs": 1, "steps_per_epoch": 1, "val_max_slices": 4},
        "metrics": {"lpips_pairs": 10, "zbin_lpips_pairs": 2},
        "utility": {"seeds": [0], "steps": 2},
        "experiments": {"prediction": ["x0"], "folds": [0]},
        "cluster": {"train": {"mem_mb": 1000}, "generate": {"mem_mb": 100}},
    }
    ours = validate_config(base)
    paper = validate_config(
        {
            **base,
            "generation": {"replicas": 5, "n_per_condition": 10, "classes": [0, 1]},  # job_unit zbin
            "sampler": {"steps": 300},
            "training": {"batch_size": 4, "max_epochs": 10, "val_max_slices": None},
            "metrics": {"lpips_pairs": 100, "zbin_lpips_pairs": 20},
            "utility": {"seeds": [0, 1], "steps": 100},
            "experiments": {"prediction": ["x0", "v"], "folds": [0, 1]},
        }
    )
    work = tmp_path / "w"
    _bench(
        work, "train", "x0_lp1.5_sc0.5_fold0", wall=20.0, cpu=40.0, rss=900, gpu_line="x peak GPU memory 512.0 MiB on H"
    )
    _bench(work, "generate", "x0_lp1.5_sc0.5_fold0_replica0", wall=12.0, cpu=24.0, rss=150)
    _bench(work, "utility", "x0_lp1.5_sc0.5_fold0", wall=8.0, cpu=8.0, rss=50)
    _bench(work, "metrics_image", "x0_lp1.5_sc0.5_fold0", wall=16.0, cpu=16.0, rss=50)
    _bench(work, "figures", "figures", wall=3.0, cpu=3.0, rss=10)
    bench = pilot.read_benchmarks(work)
    assert bench.loc[bench["rule"] == "train", "gpu_peak_mib"].item() == 512.0
    # pilot: 2 subjects; fold 0 has 40 train / 8 val slices. The paper's cohort has 4 subjects: twice the slices.
    sizes = pilot.DataSizes(2, {0: 40.0, 1: 40.0}, {0: 8.0, 1: 8.0})
    costing = pilot.extrapolate(
        bench, ours, paper, sizes, sizes.scaled(4), 4, paper["cluster"], {"train": "train", "generate": "generate"}
    )
    r = costing.per_rule.set_index("rule")
    # train: pilot 1 step x 4 slices + 4 validation slices = 8 units -> 2.5 s wall, 5 s CPU per slice.
    # paper: 2 runs x 2 folds, each 10 epochs x (80 training + 16 validation slices) = 960 units.
    assert r.loc["train", "pilot_units"] == 8 and r.loc["train", "paper_units"] == 4 * 960
    assert math.isclose(r.loc["train", "paper_cpu_h"], 5.0 * 4 * 960 / 3600)
    assert r.loc["train", "within_request"] is True or r.loc["train", "within_request"] == True  # noqa: E712
    # generate: pilot 3 z-bins x 2 classes x 1 x 2 steps = 12 units -> 1 s wall per unit; paper: per-z-bin jobs,
    # 4 run-folds x 5 replicas x 3 z-bins jobs of 2 x 10 samples x 300 steps.
    assert r.loc["generate", "pilot_units"] == 12 and r.loc["generate", "paper_jobs"] == 60
    assert math.isclose(r.loc["generate", "paper_wall_h"], 1.0 * 60 * 6000 / 3600)
    assert r.loc["generate", "within_request"] == False  # noqa: E712 - 150 MB over a 100 MB request
    # utility: 2 arms x 1 seed x 2 steps = 4 units -> 2 s; paper 4 jobs x 2 arms x 2 seeds x 100 steps.
    assert math.isclose(r.loc["utility", "paper_cpu_h"], 2.0 * 4 * 400 / 3600)
    # metrics_image: 6 images + 10 + 2 x 3 pairs = 22 units; paper 5 x 60 + 100 + 20 x 3 = 460 per run-fold.
    assert math.isclose(r.loc["metrics_image", "paper_cpu_h"], 16.0 / 22 * 4 * 460 / 3600)
    assert r.loc["figures", "paper_units"] == 1 and math.isclose(r.loc["figures", "paper_cpu_h"], 3.0 / 3600)
    # With the training's epoch seconds (log.csv): 10 of its 20 s are the 8 units, the rest is start-up, once a job.
    split = pilot.extrapolate(
        bench, ours, paper, sizes, sizes.scaled(4), 4, paper["cluster"], {}, {("train", "x0_lp1.5_sc0.5_fold0"): 10.0}
    )
    t = split.per_rule.set_index("rule").loc["train"]
    assert math.isclose(t["wall_s_per_unit"], 10.0 / 8) and math.isclose(t["overhead_s_per_job"], 10.0)
    assert math.isclose(t["paper_cpu_h"], (20.0 / 8 * 3840 + 20.0 * 4) / 3600)  # CPU split as the wall time
    stages = costing.per_stage.set_index("stage")
    assert math.isclose(stages.loc["train", "paper_cpu_h"], r.loc["train", "paper_cpu_h"])
    text = pilot.render(costing, {"commit": "abc", "cpu": "test CPU", "cores": 2}, "make pilot", [], "synthetic")
    assert "| train | 1 | 20.0 |" in text and "every rule of the paper's DAG ran" in text
    assert "GPU peak" in text and "test CPU, 2 cores" in text
    # The README's block: the per-stage hours, their total in a planner's unit, the stamp and the report's link.
    stamp = {"commit": "abc", "cpu": "test CPU", "cores": 2, "date": "2026-12-05T10:00:00+00:00", "gpu": "H, 80 GB"}
    assert costing.on_gpu  # the training's rule log named a GPU
    block = pilot.readme_block(costing, stamp, "make pilot", "docs/results/pilot.md", "training bf16-mixed")
    prose = " ".join(block.split("\n\n")[0].split("\n"))
    assert "`make pilot` at commit abc (2026-12-05) on test CPU, 2 cores, GPU H, 80 GB" in prose
    assert "([its report](docs/results/pilot.md))" in prose and "(training bf16-mixed)" in prose
    assert "| stage | hours | CPU core-hours | GPU-hours |" in block
    stages_shown = [line.split("|")[1].strip() for line in block.splitlines() if line.startswith("| ")][1:-1]
    assert stages_shown == ["train", "generate", "metrics", "utility", "figures"]  # the pipeline's order
    total, gpu_h = stages["paper_wall_h"].sum(), stages["paper_gpu_h"].sum()
    assert f"| **total** | {pilot._hours(total)} ({pilot.human_hours(total)}) |" in block
    assert block.rstrip().endswith(f"| {pilot._hours(gpu_h)} ({pilot.human_hours(gpu_h)}) |")
    assert max(len(line) for line in block.splitlines()) <= 120
    on_cpu = pilot.readme_block(dataclasses.replace(costing, on_gpu=False), stamp, "make pilot", "r.md")
    assert "on test CPU, 2 cores, no GPU" in on_cpu and "GPU-hours" not in on_cpu


def test_human_hours_picks_the_unit_a_person_plans_in():
    assert pilot.human_hours(3.04) == "3.0 h"
    assert pilot.human_hours(72) == "3 days"
    assert pilot.human_hours(227_240) == "26 years"


def test_the_readme_block_is_replaced_between_its_markers_and_nowhere_else(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(
        "# x\n<!-- pilot-cost-cpu: written by slimdiff-pilot report -->\nold\nlines\n<!-- /pilot-cost-cpu -->\n"
        "<!-- pilot-cost-gpu -->\nNo GPU pilot yet.\n<!-- /pilot-cost-gpu -->\ntail\n"
    )
    pilot.write_readme_block(readme, "pilot-cost-cpu", "new table\n")
    assert readme.read_text() == (
        "# x\n<!-- pilot-cost-cpu: written by slimdiff-pilot report -->\nnew table\n<!-- /pilot-cost-cpu -->\n"
        "<!-- pilot-cost-gpu -->\nNo GPU pilot yet.\n<!-- /pilot-cost-gpu -->\ntail\n"
    )
    other = tmp_path / "OTHER.md"
    other.write_text("# no markers\n")
    with pytest.raises(pilot.PilotError, match=r"OTHER\.md: no '<!-- pilot-cost-gpu -->'"):
        pilot.write_readme_block(other, "pilot-cost-gpu", "x\n")
    assert other.read_text() == "# no markers\n"


def test_the_projects_readme_has_a_cost_block_for_each_kind_of_machine():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    for name in pilot.README_BLOCKS.values():
        assert re.search(rf"^<!-- {name}\b.*-->$", text, re.M) and f"\n<!-- /{name} -->\n" in text, name


def test_the_pilot_report_is_on_the_snakemake_reports_front_page(tmp_path, monkeypatch):
    """report/workflow.rst, rendered as Snakemake renders it (Jinja, then docutils), shows the pages that
    figures.report_pages names; `slimdiff-pilot prepare` writes a placeholder so the report builds before the
    pilot report exists."""
    import jinja2
    from docutils.core import publish_parts

    workdir = tmp_path / "pilot"
    pilot.prepare(PILOT, workdir, raw_dir=_fake_cohort(tmp_path / "raw"), paper_file=PAPER)
    assert "has not finished" in (workdir / "report.md").read_text()
    config = pilot.resolved(PILOT)
    assert config["figures"]["report_pages"] == ["report.md"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.md").write_text("| rule | jobs |\n|---|---:|\n| train | 10 |\nextrapolated: 42.0 GPU-h\n")

    class Snakemake:
        pass

    Snakemake.config = config
    rst = jinja2.Environment().from_string((REPO / "report" / "workflow.rst").read_text())
    html = publish_parts(rst.render(snakemake=Snakemake, files=[], categories={}), writer_name="html")["html_body"]
    assert "extrapolated: 42.0 GPU-h" in html and "| train | 10 |" in html
    default = validate_config({})
    Snakemake.config = default
    html = publish_parts(rst.render(snakemake=Snakemake, files=[], categories={}), writer_name="html")["html_body"]
    assert "GPU-h" not in html


@pytest.mark.slow
def test_the_ci_scripts_precision_probe_runs():
    """.ci/run picks the pilot's time estimate by the precision it will compute in; a probe that fails falls back
    to float32's slower estimate and may skip the pilot, so it must import what the package has today."""
    import subprocess
    import sys

    probes = re.findall(r'python -c "([^"]+)"', (REPO / ".ci" / "run").read_text())
    assert probes, ".ci/run has no precision probe"
    for code in probes:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0 and out.stdout.strip() in {"0", "1"}, out.stderr
