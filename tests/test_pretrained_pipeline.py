"""A pretrained run through the real pipeline: an upstream checkpoint, tracked by DVC, sampled and scored."""

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_project
from test_workflow import BIN, ENV, snakemake

CKPT = REPO / "tests" / "data" / "upstream" / "x0_sc.ckpt"  # x0, Lp 1.5, self-conditioning 0.5; 32x32, 4 z-bins


def pretrained_project(tmp_path: Path) -> tuple[Path, dict]:
    proj = copy_project(tmp_path / "proj")
    shutil.copy(CKPT, proj / "pretrained" / "x0_sc.ckpt")
    config_path = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(config_path.read_text())
    cfg["data"]["cache"].update(z_bins=4, z_range=[3, 26])  # the checkpoint's geometry
    cfg["generation"]["job_unit"] = "replica"  # one sampling process for the four z-bins
    cfg["utility"]["enabled"] = False  # a run like any other there; test_workflow runs the stage
    cfg["experiments"] = {
        "prediction": ["x0"],
        "p": [1.5],
        "self_conditioning": [0.5],
        "pretrained": {"file": "pretrained/x0_sc.ckpt"},
    }
    config_path.write_text(yaml.safe_dump(cfg))
    return proj, cfg


@pytest.mark.pipeline
@pytest.mark.scenario
def test_pretrained_checkpoint_is_scored_like_a_trained_run(tmp_path, metric_weights):
    proj, cfg = pretrained_project(tmp_path)

    def run(*cmd):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=proj)
        assert proc.returncode == 0, " ".join(cmd) + "\n" + proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    dvc = str(BIN / "dvc")
    run("git", "init", "-q")
    run(dvc, "init", "-q")
    run(dvc, "add", "-q", "pretrained/x0_sc.ckpt")
    first = run(dvc, "repro")
    assert "Running stage 'compute'" in first and "Running stage 'figures'" in first

    run_dir = proj / "results" / "runs" / "x0_lp1.5_sc0.5-pretrained" / "fold0"
    assert (run_dir / "train" / "model.pt").exists() and not (run_dir / "train" / "log.csv").exists()
    assert not (proj / "results" / "logs" / "train").exists(), "nothing was trained"
    log = (proj / "results" / "logs" / "import_pretrained" / "x0_lp1.5_sc0.5-pretrained_fold0.log").read_text()
    assert '"weights": "ema"' in log and "x0_sc.ckpt" in log
    summary = json.loads((proj / "results" / "metrics" / "summary.json").read_text())
    assert set(summary["runs"]) == {"x0_lp1.5_sc0.5-pretrained/fold0"}
    assert summary["runs"]["x0_lp1.5_sc0.5-pretrained/fold0"]["kid"]["mean"] is not None
    table = (proj / "results" / "paper" / "table.md").read_text()
    assert "pretrained" in table and "real vs real" in table
    assert (proj / "results" / "figures" / "similarity_metrics.pdf").exists()
    assert "up to date" in run(dvc, "status")

    # DVC tracks the checkpoint: another file in its place makes the compute stage stale
    shutil.copy(REPO / "tests" / "data" / "upstream" / "v_sc_cfg.ckpt", proj / "pretrained" / "x0_sc.ckpt")
    assert "compute" in run(dvc, "status")
    # ... and Snakemake refuses it: the file is not the model the grid describes
    proc = snakemake(proj, "--cores", "1", "--forcerun", "import_pretrained", "compute", snakefile=proj / "Snakefile")
    assert proc.returncode != 0
    log = (proj / "results" / "logs" / "import_pretrained" / "x0_lp1.5_sc0.5-pretrained_fold0.log").read_text()
    assert "prediction: grid says x0, model is v" in log
    assert not (run_dir / "train" / "model.pt").exists()
