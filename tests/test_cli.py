import subprocess
import sys

import pandas as pd
import yaml
from conftest import phantom_config

from slimdiff.cli import cache as cache_cli
from slimdiff.cli import synth as synth_cli


def test_synth_cli_writes_a_cohort(tmp_path):
    rc = synth_cli.main(
        ["--out", str(tmp_path / "raw"), "--patients", "1", "--controls", "1", "--voxel-mm", "4", "5", "--seed", "3"]
        + ["--lesion-volume-ml", "9", "10", "--variability", "0.5"]
    )
    assert rc == 0
    table = pd.read_csv(tmp_path / "raw" / "participants.tsv", sep="\t")
    assert table["group"].tolist() == ["fcd", "hc"]
    assert 5.0 < table["lesion_volume_ml"].iloc[0] < 14.0  # 9-10 cm^3, as written on a coarse 4-5 mm grid


def test_cache_cli_builds_cache_and_qc(phantom_cohort, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": phantom_config()}))
    rc = cache_cli.main(["--raw", str(phantom_cohort), "--out", str(tmp_path / "c"), "--config", str(cfg), "--qc"])
    assert rc == 0
    assert (tmp_path / "c" / "cache_meta.json").exists() and (tmp_path / "c" / "qc" / "zbin_montage.png").exists()


def test_cache_cli_bad_input_exits_2_naming_the_file(phantom_cohort, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": phantom_config()}))
    bad = phantom_cohort / "sub-p1" / "anat" / "sub-p1_FLAIR.nii.gz"
    bad.write_bytes(b"garbage")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimdiff.cli.cache",
            "--raw",
            str(phantom_cohort),
            "--out",
            str(tmp_path / "c"),
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert f"slimdiff-cache: error: {bad}: cannot read FLAIR image" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cache_cli_bad_config(phantom_cohort, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("data:\n  cache:\n    z_bins: many\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "slimdiff.cli.cache",
            "--raw",
            str(phantom_cohort),
            "--out",
            str(tmp_path / "c"),
            "--config",
            str(cfg),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "data.cache.z_bins" in proc.stderr and str(cfg) in proc.stderr


def test_train_lists_the_runs_of_a_config_with_their_folds(capsys):
    from conftest import REPO

    from slimdiff.cli.train import main

    assert main(["--list-runs", "--config", str(REPO / "config" / "paper.yaml")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 23
    assert "x0_lp1.5_sc0.5  folds [0, 1, 2]" in lines and "epsilon_lp2.0_sc0.8  folds [0]" in lines
