"""The Snakemake workflow and the DVC stages, run for real on a tiny synthetic cohort."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import rerun_contract
import yaml
from conftest import REPO, copy_project, tiny_config

from slimdiff.config import validate_config
from slimdiff.data.cache import load_cache
from slimdiff.io import read_json

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def snakemake(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess:
    cmd = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config" / "config.yaml"),
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=workdir)


def test_lint():
    proc = subprocess.run([str(BIN / "snakemake"), "--lint"], capture_output=True, text=True, env=ENV, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_plans_the_data_stage(tmp_path):
    tiny_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for rule in ("synth_cohort", "build_cache", "cache_qc", "all"):
        assert rule in out
    assert re.search(r"^train\s+2$", out, re.M), "one train job per run of the grid"
    assert re.search(r"^generate\s+6$", out, re.M), "one generate job per run, replica and z-bin"
    assert re.search(r"^gather_samples\s+2$", out, re.M)
    assert re.search(r"^metrics_image\s+2$", out, re.M) and re.search(r"^aggregate_metrics\s+1$", out, re.M)


def test_replica_jobs_sample_every_zbin_in_one_job(tmp_path):
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["generation"].update(job_unit="replica", replicas=2)
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert re.search(r"^generate\s+4$", out, re.M), "one generate job per run and replica"
    proc = snakemake(tmp_path, "-n", "results/runs/x0_lp1.5_sc0.5/fold0/samples/replica1/zbin02.npz")
    plan = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "zbin00.npz" in plan and "zbin01.npz" in plan, "the job writes every z-bin file"


def test_dry_run_rejects_a_bad_config(tmp_path):
    path = tiny_config(tmp_path)
    path.write_text("data:\n  cache:\n    z_bins: -1\nexperiments:\n  - prediction: [eps]\n")
    proc = snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data.cache.z_bins: -1 is less than the minimum" in out
    assert "experiments.0.prediction.0: 'eps' is not one of ['epsilon', 'v', 'x0']" in out


def test_raw_source_needs_an_existing_directory(tmp_path):
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["source"] = "raw"
    cfg["data"]["raw_dir"] = "data/ds004199"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode != 0 and "data/ds004199" in proc.stdout + proc.stderr


def check_rerun_contract(proj: Path) -> None:
    """On a finished pipeline: every config key reruns exactly its rules; a new replica or fold only adds jobs."""
    config_path = proj / "config" / "config.yaml"

    def dry_run(*args):
        proc = snakemake(proj, "-n", *args, snakefile=proj / "Snakefile")
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    problems = rerun_contract.check(config_path, dry_run)
    assert not problems, "\n".join(problems)

    original = config_path.read_text()
    cfg = yaml.safe_load(original)
    try:
        cfg["generation"]["replicas"] = 2
        config_path.write_text(yaml.safe_dump(cfg))
        jobs = rerun_contract.jobs(dry_run())
        assert "train" not in jobs and jobs["generate"], sorted(jobs)
        assert all(w["replica"] == "1" for w in jobs["generate"]), "only the new replica is sampled"
        assert all(w["replica"] == "1" for w in jobs["gather_samples"])
        cfg["generation"]["replicas"] = 1
        cfg["training"]["folds"] = [0, 1]
        config_path.write_text(yaml.safe_dump(cfg))
        jobs = rerun_contract.jobs(dry_run())
        assert jobs["train"] and all(w["fold"] == "1" for w in jobs["train"]), "only the new fold trains"
        assert all(w["fold"] == "1" for w in jobs["generate"])
        cfg["training"]["folds"] = [0]
        cfg["experiments"]["p"] = [1.5, 2.0]  # a wider grid: only the new runs train
        config_path.write_text(yaml.safe_dump(cfg))
        jobs = rerun_contract.jobs(dry_run())
        assert sorted(w["run"] for w in jobs["train"]) == ["epsilon_lp2.0_sc0.5", "x0_lp2.0_sc0.5"]
        cfg["experiments"]["p"] = [1.5]
        cfg["self_conditioning"]["per_sample"] = True  # another coin: other runs (named -sample)
        config_path.write_text(yaml.safe_dump(cfg))
        jobs = rerun_contract.jobs(dry_run())
        assert sorted(w["run"] for w in jobs["train"]) == ["epsilon_lp1.5_sc0.5-sample", "x0_lp1.5_sc0.5-sample"]
        cfg["self_conditioning"]["per_sample"] = False
        cfg["data"].update(source="raw", raw_dir="results/raw")  # the same cohort, as the user's own data
        config_path.write_text(yaml.safe_dump(cfg))
        assert not rerun_contract.jobs(dry_run()), "the same raw files rebuild nothing"
    finally:
        config_path.write_text(original)


@pytest.mark.pipeline
@pytest.mark.skipif(shutil.which("git") is None, reason="dvc repro needs git")
def test_pipeline_for_real_with_snakemake_and_dvc(tmp_path, metric_weights):
    """The whole tiny pipeline; reruns driven by params; DVC stages that wrap Snakemake targets."""
    proj = copy_project(tmp_path / "proj")

    resolved = proj / "resolved-config.yaml"  # what every Snakemake call under `dvc repro` resolves

    def run(*cmd):
        env = {**ENV, "SLIMDIFF_SHOW_CONFIG": str(resolved)}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=proj)
        assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    dvc = str(BIN / "dvc")
    git = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
    run("git", "init", "-q")
    run(*git, "commit", "-q", "--allow-empty", "-m", "init")
    run(dvc, "init", "-q")
    run(dvc, "remote", "add", "-d", "store", str(tmp_path / "dvc-remote"))

    # a fresh project: `dvc repro` runs the whole pipeline through Snakemake, then there is nothing left to do
    first = run(dvc, "repro")
    for stage in ("cohort", "cache", "compute", "figures"):
        assert f"Running stage '{stage}'" in first
    tiny = validate_config(yaml.safe_load((proj / "config" / "config.yaml").read_text()))
    assert yaml.safe_load(resolved.read_text()) == tiny, "dvc repro runs config/config.yaml as Snakemake resolves it"
    cache = load_cache(proj / "results" / "cache")
    assert cache.meta["counts"]["patients"] == 3 and cache.meta["z_bins"] == 3
    for name in ("zbin_montage.png", "cohort_stats.png", "cohort_stats.csv"):
        assert (proj / "results" / "cache" / "qc" / name).stat().st_size > 0
    for run_name in ("epsilon_lp1.5_sc0.5", "x0_lp1.5_sc0.5"):
        train = proj / "results" / "runs" / run_name / "fold0" / "train"
        for name in ("model.pt", "log.csv", "loss.png", "last.ckpt"):
            assert (train / name).exists(), f"{run_name}: {name}"
        samples = train.parent / "samples" / "replica0"
        assert sorted(p.name for p in samples.glob("zbin*.npz")) == ["zbin00.npz", "zbin01.npz", "zbin02.npz"]
        assert (samples / "grid.png").exists() and len(pd.read_csv(samples / "manifest.csv")) == 3 * 2
    summary = json.loads((proj / "results" / "metrics" / "summary.json").read_text())
    assert set(summary["runs"]) == {"epsilon_lp1.5_sc0.5/fold0", "x0_lp1.5_sc0.5/fold0"}
    assert "kid" in summary["baseline"] and len(summary["weights_sha256"]) == 2
    utility = summary["utility"]  # the downstream segmenter: real-only once per fold, two arms per run
    assert set(utility["real"]) == {"fold0"} and set(utility["runs"]) == set(summary["runs"])
    assert len(utility["real"]["fold0"]["per_seed"]) == 2
    assert set(utility["comparison"]["x0_lp1.5_sc0.5"]) == {"real+syn", "syn"}
    for rule in (
        "synth_cohort",
        "build_cache",
        "cache_qc",
        "train",
        "generate",
        "gather_samples",
        "metrics_image",
        "metrics_mask",
        "baseline",
        "utility",
        "utility_real",
        "aggregate_metrics",
    ):
        logs = list((proj / "results" / "logs" / rule).glob("*.log"))
        assert logs and logs[0].stat().st_size > 0, f"rule {rule} left no log"
    for stem in ("similarity_metrics", "per_zbin", "training_curves"):
        assert (proj / "results" / "figures" / f"{stem}.pdf").exists()
    assert "real vs real" in (proj / "results" / "paper" / "table.md").read_text()
    assert "Running stage" not in run(dvc, "repro")
    assert "up to date" in run(dvc, "status")
    again = snakemake(proj, "-n", snakefile=proj / "Snakefile")
    assert "Nothing to be done" in again.stdout + again.stderr
    check_rerun_contract(proj)
    report = snakemake(proj, "--cores", "1", "--report", "results/report.html", snakefile=proj / "Snakefile")
    assert report.returncode == 0 and (proj / "results" / "report.html").stat().st_size > 10_000, report.stderr
    html = (proj / "results" / "report.html").read_text()
    for item in ("Per z-bin, all runs", "zbin02.png", "similarity_metrics.png", "table.csv", "grid.png"):
        assert item in html, f"report lacks {item}"
    metrics_show = run(dvc, "metrics", "show")  # results/metrics/headline: a narrow row per run and fold
    shown = metrics_show.splitlines()
    assert {"kid", "lpips", "fid", "lesion_rate_cls0"} <= set(shown[0].split()) and len(shown[0].split()) <= 13
    assert any("headline/x0_lp1.5_sc0.5/fold0.json" in line for line in shown), metrics_show
    assert any("headline/baseline.json" in line for line in shown) and max(map(len, shown)) < 250, metrics_show
    metrics_diff = run(dvc, "metrics", "diff", "--all")  # the workspace against HEAD, where none are yet
    assert re.search(r"headline/x0_lp1\.5_sc0\.5/fold0\.json\s+kid\s", metrics_diff), metrics_diff
    json_files = list((proj / "results").rglob("*.json"))
    assert {"image.json", "mask.json", "metrics.json", "summary.json", "baseline.json"} <= {p.name for p in json_files}
    for path in json_files:  # standard JSON everywhere: no NaN or Infinity tokens
        read_json(path)

    # the figures stage: a style change redraws figures only
    model = proj / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0" / "train" / "model.pt"
    sample = proj / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0" / "samples" / "replica0" / "zbin00.npz"
    figure = proj / "results" / "figures" / "similarity_metrics.png"
    before = {p: p.stat().st_mtime_ns for p in (model, sample, figure)}
    cfg = yaml.safe_load((proj / "config" / "config.yaml").read_text())
    cfg["figures"] = {"dpi": 90}
    (proj / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    third = run(dvc, "repro")
    assert "Running stage 'figures'" in third
    assert all(f"Running stage '{s}'" not in third for s in ("cohort", "cache", "compute"))
    assert figure.stat().st_mtime_ns > before[figure]
    assert model.stat().st_mtime_ns == before[model] and sample.stat().st_mtime_ns == before[sample]

    # push models and metrics; a fresh clone pulls them and redraws the figures without training or sampling
    run("git", "add", "-A")
    run(*git, "commit", "-q", "-m", "results")
    pushed = run(dvc, "push")
    assert re.search(r"\d+ files? pushed", pushed), pushed
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(proj), str(clone)], check=True, env=ENV)

    def run_clone(*cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=clone)
        assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    run_clone(dvc, "pull", "compute")
    pulled = clone / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0" / "train"
    assert (pulled / "model.pt").read_bytes() == model.read_bytes()
    assert (pulled / "log.csv").exists() and not (pulled / "last.ckpt").exists(), "only the exported model travels"
    assert not (pulled.parent / "samples").exists()
    assert (clone / "results" / "metrics" / "summary.json").exists()
    assert not (clone / "results" / "metrics" / "features").exists()
    redraw = run_clone(dvc, "repro", "-s", "figures")
    assert "Running stage 'figures'" in redraw and "Running stage 'compute'" not in redraw
    assert (clone / "results" / "figures" / "similarity_metrics.pdf").exists()
    assert not (clone / "results" / "logs" / "train").exists() and not (pulled.parent / "samples").exists()
    # going on with Snakemake in the clone: rebuild the (deterministic) cache, mark the pulled models up to date
    # (checkout order, not training, set their timestamps), and only sampling is left to do
    proc = snakemake(clone, "--cores", "2", "cache_qc", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = [str(p.relative_to(clone)) for p in (clone / "results" / "runs").glob("*/fold*/train/model.pt")]
    proc = snakemake(clone, "--cores", "1", "--touch", *models, snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = snakemake(clone, "-n", "--quiet", "rules", snakefile=clone / "Snakefile")
    text = plan.stdout + plan.stderr
    assert plan.returncode == 0 and re.search(r"^generate\s+6$", text, re.M) and not re.search(r"^train\s", text, re.M)

    # a changed cache parameter reruns the cache (params trigger) but not the cohort
    cfg["figures"] = {"dpi": 100}
    cfg["data"]["cache"]["z_bins"] = 2
    (proj / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = snakemake(proj, "-n", "--quiet", "rules", snakefile=proj / "Snakefile")
    text = plan.stdout + plan.stderr
    assert "build_cache" in text and "synth_cohort" not in text
    assert re.search(r"^train\s+2$", text, re.M), "a new cache retrains every run"

    # a changed sampler resamples without retraining
    cfg["data"]["cache"]["z_bins"] = 3
    cfg["sampler"]["steps"] = 4
    (proj / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = snakemake(proj, "-n", "--quiet", "rules", snakefile=proj / "Snakefile")
    text = plan.stdout + plan.stderr
    assert re.search(r"^generate\s+6$", text, re.M) and not re.search(r"^train\s", text, re.M), text[-2000:]

    # a changed training value reruns the training jobs, not the cache
    cfg["sampler"]["steps"] = 3
    cfg["experiments"]["p"] = [1.5]
    cfg["training"]["lr"] = 5e-4
    (proj / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    plan = snakemake(proj, "-n", "--quiet", "rules", snakefile=proj / "Snakefile")
    text = plan.stdout + plan.stderr
    assert re.search(r"^train\s+2$", text, re.M) and "build_cache" not in text
