import subprocess
import sys

import pandas as pd
import pytest
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


def test_synth_replaces_only_a_cohort_it_wrote(tmp_path, capsys):
    from slimdiff.data.synth import _replaceable

    other = tmp_path / "data"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert synth_cli.main(["--out", str(other), "--patients", "1", "--controls", "0"]) == 2
    assert f"slimdiff-synth: error: {other}: exists and is not a synthetic cohort" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
    cohort = tmp_path / "cohort"
    assert _replaceable(cohort)
    cohort.mkdir()
    assert _replaceable(cohort)
    (cohort / "dataset_description.json").write_text('{"GeneratedBy": [{"Name": "slimdiff-synth"}]}')
    assert _replaceable(cohort) and not _replaceable(other)


@pytest.mark.slow
def test_cache_cli_builds_cache_and_qc(phantom_cohort, tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({"data": phantom_config()}))
    rc = cache_cli.main(["--raw", str(phantom_cohort), "--out", str(tmp_path / "c"), "--config", str(cfg), "--qc"])
    assert rc == 0
    assert (tmp_path / "c" / "cache_meta.json").exists() and (tmp_path / "c" / "qc" / "zbin_montage.png").exists()


@pytest.mark.slow
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
    assert len(lines) == 25  # Table 1 and its ablation (one split), the camera-ready coupling grid
    assert "x0_lp1.5_sc0.5@camera_ready  folds [0, 1, 2]" in lines and "epsilon_lp2.0_sc0.8@table1  folds [0]" in lines


# A command whose library call fails: with an expected input error, or with a bug (any other exception).
FAILING_EXPORT = """
import sys
import slimdiff.generation.outputs as outputs
from slimdiff.cli import export
from slimdiff.errors import MissingInputError

def fail(items):
    raise {error}("inside the command")

outputs.find_sample_files = fail
sys.exit(export.main(["--samples", "s", "--out", "o"]))
"""


@pytest.mark.parametrize(
    "error, returncode", [("MissingInputError", 2), ("ValueError", 1), ("FileNotFoundError", 1), ("KeyError", 1)]
)
def test_only_input_errors_become_one_line(tmp_path, error, returncode):
    """SlimdiffInputError and its subclasses: `prog: error: message`, exit 2. Anything else is a bug: traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", FAILING_EXPORT.format(error=error)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == returncode, proc.stderr
    if returncode == 2:
        assert proc.stderr == "slimdiff-export: error: inside the command\n"
    else:
        assert "Traceback" in proc.stderr and f"{error}: " in proc.stderr and "error: inside" not in proc.stderr


def test_input_errors_share_one_base():
    from slimdiff.config import ConfigError
    from slimdiff.data.cache import CacheError
    from slimdiff.data.ingest import DataError
    from slimdiff.errors import MissingInputError, OutputExistsError, SlimdiffInputError
    from slimdiff.generation.spec import SpecError
    from slimdiff.io import JSONFileError
    from slimdiff.metrics.weights import WeightsError
    from slimdiff.model.file import ModelFileError

    for cls in (ConfigError, CacheError, DataError, SpecError, JSONFileError, WeightsError, ModelFileError):
        assert issubclass(cls, SlimdiffInputError), cls
    assert issubclass(MissingInputError, FileNotFoundError) and issubclass(OutputExistsError, FileExistsError)
    assert not issubclass(SlimdiffInputError, ValueError | OSError)
