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
from interrupt import kill_when, make_run, results
from warm_snakemake import WARM

from slimdiff import pilot
from slimdiff.config import validate_config
from slimdiff.data.cache import load_cache
from slimdiff.io import read_json
from slimdiff.workflow_lock import locks

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}


def snakemake(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess:
    """`snakemake` in `workdir` with its config/config.yaml: a dry run (-n) in the warm process, jobs for real."""
    argv = ["--snakefile", str(snakefile), "--directory", str(workdir)]
    argv += ["--configfile", str(workdir / "config" / "config.yaml"), *args]
    if "-n" in args:
        return WARM.run(argv, workdir, ENV)
    return subprocess.run([str(BIN / "snakemake"), *argv], capture_output=True, text=True, env=ENV, cwd=workdir)


@pytest.mark.slow
def test_lint():
    proc = subprocess.run([str(BIN / "snakemake"), "--lint"], capture_output=True, text=True, env=ENV, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_dry_run_plans_the_data_stage(tmp_path):
    tiny_config(tmp_path)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for rule in ("synth_cohort", "build_cache", "cache_qc", "all"):
        assert rule in out
    assert re.search(r"^train\s+2$", out, re.M), "one train job per run of the grid"
    assert re.search(r"^generate\s+2$", out, re.M), "one generate job per run and replica (job_unit replica)"
    assert re.search(r"^gather_samples\s+2$", out, re.M)
    assert re.search(r"^metrics_image\s+2$", out, re.M) and re.search(r"^aggregate_metrics\s+1$", out, re.M)


@pytest.mark.slow
def test_job_units_zbin_and_replica(tmp_path):
    """`zbin` (the schema's default, the paper's): a job per z-bin; `replica`: one job writes every z-bin file."""
    path = tiny_config(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["generation"].update(job_unit="zbin", replicas=2)
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^generate\s+12$", proc.stdout + proc.stderr, re.M), "one job per run, replica and z-bin"
    cfg["generation"]["job_unit"] = "replica"
    path.write_text(yaml.safe_dump(cfg))
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert re.search(r"^generate\s+4$", out, re.M), "one generate job per run and replica"
    proc = snakemake(tmp_path, "-n", "results/runs/x0_lp1.5_sc0.5/fold0/samples/replica1/zbin02.npz")
    plan = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "zbin00.npz" in plan and "zbin01.npz" in plan, "the job writes every z-bin file"


@pytest.mark.slow
def test_dry_run_rejects_a_bad_config(tmp_path):
    path = tiny_config(tmp_path)
    path.write_text("data:\n  cache:\n    z_bins: -1\nexperiments:\n  - prediction: [eps]\n")
    proc = snakemake(tmp_path, "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "data.cache.z_bins: -1 is less than the minimum" in out
    assert "experiments.0.prediction.0: 'eps' is not one of ['epsilon', 'v', 'x0']" in out


@pytest.mark.slow
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


# ---- one finished tiny project, built once by `dvc repro`; each test below checks one property of it ----
#
# The tests that use `finished` live in this module, so `make test` (--dist loadfile) builds it on one worker,
# once; `make test-pipelines` builds it again for the `scenario` tests (a kill and resume, a DVC push and clone).
# A test that changes the project restores what it changed (the config) or works on a copy, so the tests pass in
# any order and one failure does not hide the others.

FINISHED = pytest.mark.xdist_group("finished_project")
GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@t")
DVC = str(BIN / "dvc")
RUNS = ("epsilon_lp1.5_sc0.5", "x0_lp1.5_sc0.5")
KILLED_RUN = RUNS[1]


def runner(cwd: Path, env: dict | None = None):
    """run(*cmd) in `cwd`: asserts it succeeds, returns stdout + stderr."""

    def run(*cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env or ENV, cwd=cwd)
        assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    return run


def plan(proj: Path) -> str:
    """`snakemake -n --quiet rules` of the project's own workflow: the number of jobs per rule."""
    proc = snakemake(proj, "-n", "--quiet", "rules", snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def copy_finished(finished, dest: Path) -> Path:
    """A copy of the finished project (git, DVC and Snakemake state, timestamps kept) for a test that changes it."""
    shutil.copytree(finished.proj, dest, symlinks=True)
    return dest


class Finished:
    def __init__(self, proj: Path, first: str, resolved: Path, remote: Path):
        self.proj, self.first, self.resolved, self.remote = proj, first, resolved, remote
        self.run = runner(proj)
        self.config = proj / "config" / "config.yaml"


# Session scope: built once per worker even if a test of another module runs between these (pytest tears a
# module fixture down then); --dist loadfile keeps every test that uses it on one worker.
@pytest.fixture(scope="session")
def finished(tmp_path_factory, metric_weights) -> Finished:
    """The whole tiny pipeline, run by `dvc repro` (every stage through Snakemake) in a fresh git + DVC project."""
    if shutil.which("git") is None:
        pytest.skip("dvc repro needs git")
    root = tmp_path_factory.mktemp("finished")
    proj = copy_project(root / "proj")
    resolved = proj / "resolved-config.yaml"  # what every Snakemake call under `dvc repro` resolves
    run = runner(proj)
    run("git", "init", "-q")
    run(*GIT, "commit", "-q", "--allow-empty", "-m", "init")
    run(DVC, "init", "-q")
    run(DVC, "remote", "add", "-d", "store", str(root / "dvc-remote"))
    first = runner(proj, {**ENV, "SLIMDIFF_SHOW_CONFIG": str(resolved)})(DVC, "repro")
    return Finished(proj, first, resolved, root / "dvc-remote")


@pytest.mark.pipeline
@FINISHED
def test_dvc_repro_runs_every_stage_with_config_yaml_as_snakemake_resolves_it(finished):
    for stage in ("cohort", "cache", "compute", "figures"):
        assert f"Running stage '{stage}'" in finished.first
    tiny = validate_config(yaml.safe_load(finished.config.read_text()))
    assert yaml.safe_load(finished.resolved.read_text()) == tiny, "dvc repro runs config/config.yaml as resolved"


@pytest.mark.pipeline
@FINISHED
def test_cache_and_its_qc(finished):
    cache = load_cache(finished.proj / "results" / "cache")
    assert cache.meta["counts"]["patients"] == 3 and cache.meta["z_bins"] == 3
    for name in ("zbin_montage.png", "cohort_stats.png", "cohort_stats.csv"):
        assert (finished.proj / "results" / "cache" / "qc" / name).stat().st_size > 0


@pytest.mark.pipeline
@FINISHED
def test_every_run_trains_and_samples_every_zbin(finished):
    for run_name in RUNS:
        train = finished.proj / "results" / "runs" / run_name / "fold0" / "train"
        for name in ("model.pt", "log.csv", "loss.png", "last.ckpt"):
            assert (train / name).exists(), f"{run_name}: {name}"
        samples = train.parent / "samples" / "replica0"
        assert sorted(p.name for p in samples.glob("zbin*.npz")) == ["zbin00.npz", "zbin01.npz", "zbin02.npz"]
        assert (samples / "grid.png").exists() and len(pd.read_csv(samples / "manifest.csv")) == 3 * 2


@pytest.mark.pipeline
@FINISHED
def test_summary_has_every_run_the_baseline_and_the_utility(finished):
    summary = json.loads((finished.proj / "results" / "metrics" / "summary.json").read_text())
    assert set(summary["runs"]) == {f"{run}/fold0" for run in RUNS}
    assert "kid" in summary["baseline"] and len(summary["weights_sha256"]) == 2
    utility = summary["utility"]  # the downstream segmenter: real-only once per fold, two arms per run
    assert set(utility["real"]) == {"fold0"} and set(utility["runs"]) == set(summary["runs"])
    assert len(utility["real"]["fold0"]["per_seed"]) == 2
    assert set(utility["comparison"]["x0_lp1.5_sc0.5"]) == {"real+syn", "syn"}


@pytest.mark.pipeline
@FINISHED
@pytest.mark.parametrize(
    "rule",
    [
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
    ],
)
def test_every_rule_leaves_a_log(finished, rule):
    logs = list((finished.proj / "results" / "logs" / rule).glob("*.log"))
    assert logs and logs[0].stat().st_size > 0, f"rule {rule} left no log"
    # ... which ends with the job's CPU time and peak memory as the kernel counted them (the pilot report reads it)
    usage = pilot._USAGE.search(logs[0].read_text())
    assert usage and float(usage[1]) > 0 and float(usage[2]) > 50, f"{logs[0]}: no resource usage line"


@pytest.mark.pipeline
@FINISHED
def test_figures_and_the_paper_table(finished):
    for stem in ("similarity_metrics", "per_zbin", "training_curves"):
        assert (finished.proj / "results" / "figures" / f"{stem}.pdf").exists()
    assert "real vs real" in (finished.proj / "results" / "paper" / "table.md").read_text()


@pytest.mark.pipeline
@FINISHED
def test_every_json_file_is_standard_json(finished):
    json_files = list((finished.proj / "results").rglob("*.json"))
    assert {"image.json", "mask.json", "metrics.json", "summary.json", "baseline.json"} <= {p.name for p in json_files}
    for path in json_files:  # no NaN or Infinity tokens
        read_json(path)


@pytest.mark.pipeline
@FINISHED
def test_a_finished_project_has_nothing_left_to_do(finished):
    assert "Running stage" not in finished.run(DVC, "repro")
    assert "up to date" in finished.run(DVC, "status")
    again = snakemake(finished.proj, "-n", snakefile=finished.proj / "Snakefile")
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.pipeline
@FINISHED
def test_rerun_contract_on_the_finished_project(finished):
    check_rerun_contract(finished.proj)


@pytest.mark.pipeline
@FINISHED
def test_changed_values_plan_the_rules_that_depend_on_them(finished):
    """Each change against the finished project, dry run, then the config as it was."""
    proj, original = finished.proj, finished.config.read_text()
    cfg = yaml.safe_load(original)
    try:
        # a changed cache parameter reruns the cache (params trigger) but not the cohort
        cfg["data"]["cache"]["z_bins"] = 2
        finished.config.write_text(yaml.safe_dump(cfg))
        text = plan(proj)
        assert "build_cache" in text and "synth_cohort" not in text
        assert re.search(r"^train\s+2$", text, re.M), "a new cache retrains every run"
        # a changed sampler resamples without retraining
        cfg["data"]["cache"]["z_bins"] = 3
        cfg["sampler"]["steps"] = 4
        finished.config.write_text(yaml.safe_dump(cfg))
        text = plan(proj)
        assert re.search(r"^generate\s+2$", text, re.M) and not re.search(r"^train\s", text, re.M), text[-2000:]
        # a changed training value reruns the training jobs, not the cache
        cfg["sampler"]["steps"] = 3
        cfg["training"]["lr"] = 5e-4
        finished.config.write_text(yaml.safe_dump(cfg))
        text = plan(proj)
        assert re.search(r"^train\s+2$", text, re.M) and "build_cache" not in text
    finally:
        finished.config.write_text(original)


@pytest.mark.pipeline
@FINISHED
def test_snakemake_report(finished):
    proj = finished.proj
    report = snakemake(proj, "--cores", "1", "--report", "results/report.html", snakefile=proj / "Snakefile")
    assert report.returncode == 0 and (proj / "results" / "report.html").stat().st_size > 10_000, report.stderr
    html = (proj / "results" / "report.html").read_text()
    for item in ("Per z-bin, all runs", "zbin02.png", "similarity_metrics.png", "table.csv", "grid.png"):
        assert item in html, f"report lacks {item}"


@pytest.mark.pipeline
@FINISHED
def test_dvc_metrics_are_a_narrow_row_per_run_and_fold(finished):
    metrics_show = finished.run(DVC, "metrics", "show")  # results/metrics/headline
    shown = metrics_show.splitlines()
    assert {"kid", "lpips", "fid", "lesion_rate_cls0"} <= set(shown[0].split()) and len(shown[0].split()) <= 13
    assert any("headline/x0_lp1.5_sc0.5/fold0.json" in line for line in shown), metrics_show
    assert any("headline/baseline.json" in line for line in shown) and max(map(len, shown)) < 250, metrics_show
    metrics_diff = finished.run(DVC, "metrics", "diff", "--all")  # the workspace against HEAD, where none are yet
    assert re.search(r"headline/x0_lp1\.5_sc0\.5/fold0\.json\s+kid\s", metrics_diff), metrics_diff


@pytest.mark.pipeline
@FINISHED
def test_a_figure_style_change_redraws_the_figures_only(finished, tmp_path):
    proj = copy_finished(finished, tmp_path / "proj")
    run_dir = proj / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0"
    model, sample = run_dir / "train" / "model.pt", run_dir / "samples" / "replica0" / "zbin00.npz"
    figure = proj / "results" / "figures" / "similarity_metrics.png"
    before = {p: p.stat().st_mtime_ns for p in (model, sample, figure)}
    config = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    cfg["figures"] = {"dpi": 90}
    config.write_text(yaml.safe_dump(cfg))
    third = runner(proj)(DVC, "repro")
    assert "Running stage 'figures'" in third
    assert all(f"Running stage '{s}'" not in third for s in ("cohort", "cache", "compute"))
    assert figure.stat().st_mtime_ns > before[figure]
    assert model.stat().st_mtime_ns == before[model] and sample.stat().st_mtime_ns == before[sample]


@pytest.mark.pipeline
@pytest.mark.scenario
@FINISHED
def test_killed_twice_then_rerun_gives_the_uninterrupted_table(finished, tmp_path):
    """An interrupted pipeline resumes to the same result, with no flag and no manual step.

    A copy of the finished project loses one run (its training, samples, scores and logs), which `make run`'s
    commands then redo: SIGKILL the whole Snakemake process group during that training and again during its
    sampling, run the same commands again, and the table and summary are the uninterrupted project's.
    """
    proj = copy_finished(finished, tmp_path / "proj")
    shutil.rmtree(proj / "results" / "runs" / KILLED_RUN)
    for log in (proj / "results" / "logs").glob(f"*/{KILLED_RUN}_*.log"):
        log.unlink()
    train = proj / "results" / "runs" / KILLED_RUN / "fold0" / "train"
    # 1. during training, between epochs: a checkpoint exists, the model does not yet
    kill_when(proj, lambda: (train / "last.ckpt").exists() and not (train / "model.pt").exists(), "mid-training")
    assert locks(proj), "the killed Snakemake left its lock"
    # 2. during sampling: the generate job has started (its log exists) and not finished
    replica = train.parent / "samples" / "replica0"
    generate_log = proj / "results" / "logs" / "generate" / f"{KILLED_RUN}_fold0_replica0.log"
    kill_when(proj, lambda: generate_log.exists() and not (replica / "manifest.csv").exists(), "sampling")
    # 3. the same commands again finish, and once more have nothing left to do
    make_run(proj)
    assert "Nothing to be done" in make_run(proj)

    assert results(proj) == results(finished.proj)
    log_csv = (train / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log_csv[1:]] == ["0", "1"], "every epoch once"


@pytest.mark.pipeline
@FINISHED
def test_a_training_job_uses_the_threads_snakemake_grants(finished, tmp_path):
    """training.threads above --cores: the job trains with the cores Snakemake gives it, not with more."""
    proj = copy_finished(finished, tmp_path / "proj")
    cfg = yaml.safe_load((proj / "config" / "config.yaml").read_text())
    cfg["training"]["threads"] = 8
    (proj / "config" / "config.yaml").write_text(yaml.safe_dump(cfg))
    model = f"results/runs/{KILLED_RUN}/fold0/train/model.pt"
    proc = snakemake(proj, "--cores", "2", "--force", model, snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (proj / "results" / "logs" / "train" / f"{KILLED_RUN}_fold0.log").read_text()
    assert "rule train, 2 thread(s)" in log and "rank 0 of 1: 2 CPU thread(s)" in log


@pytest.fixture(scope="session")
def clone(finished, tmp_path_factory) -> Path:
    """A copy of the finished project commits and pushes its results; a fresh git clone pulls stage `compute`."""
    root = tmp_path_factory.mktemp("pushed")
    proj = copy_finished(finished, root / "proj")
    run = runner(proj)
    run("git", "add", "-A")
    run(*GIT, "commit", "-q", "-m", "results")
    pushed = run(DVC, "push")
    assert re.search(r"\d+ files? pushed", pushed), pushed
    clone = root / "clone"
    subprocess.run(["git", "clone", "-q", str(proj), str(clone)], check=True, env=ENV)
    runner(clone)(DVC, "pull", "compute")
    return clone


@pytest.mark.pipeline
@pytest.mark.scenario
@FINISHED
def test_a_clone_pulls_the_exported_models_and_the_metrics(finished, clone):
    pulled = clone / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0" / "train"
    model = finished.proj / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0" / "train" / "model.pt"
    assert (pulled / "model.pt").read_bytes() == model.read_bytes()
    assert (pulled / "log.csv").exists() and not (pulled / "last.ckpt").exists(), "only the exported model travels"
    assert not (pulled.parent / "samples").exists()
    assert (clone / "results" / "metrics" / "summary.json").exists()
    assert not (clone / "results" / "metrics" / "features").exists()


@pytest.mark.pipeline
@pytest.mark.scenario
@FINISHED
def test_a_clone_redraws_the_figures_without_training_or_sampling(clone):
    redraw = runner(clone)(DVC, "repro", "-s", "figures")
    assert "Running stage 'figures'" in redraw and "Running stage 'compute'" not in redraw
    assert (clone / "results" / "figures" / "similarity_metrics.pdf").exists()
    samples = clone / "results" / "runs" / "x0_lp1.5_sc0.5" / "fold0" / "samples"
    assert not (clone / "results" / "logs" / "train").exists() and not samples.exists()


@pytest.mark.pipeline
@pytest.mark.scenario
@FINISHED
def test_a_clone_goes_on_with_snakemake_sampling_only(clone):
    """Rebuild the (deterministic) cache, mark the pulled models up to date (checkout order, not training, set
    their timestamps): only sampling is left to do."""
    proc = snakemake(clone, "--cores", "2", "cache_qc", snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    models = [str(p.relative_to(clone)) for p in (clone / "results" / "runs").glob("*/fold*/train/model.pt")]
    proc = snakemake(clone, "--cores", "1", "--touch", *models, snakefile=clone / "Snakefile")
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = plan(clone)
    assert re.search(r"^generate\s+2$", text, re.M) and not re.search(r"^train\s", text, re.M)
