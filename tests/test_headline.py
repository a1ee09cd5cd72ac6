"""The DVC headline metrics (slimdiff.metrics.headline): flat, numbers only, a row per run and fold."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from slimdiff.metrics.headline import COLUMNS, MAX_COLUMNS, headline, write_headline

REASON = {"mean": "undefined in every replica", "std": "undefined in every replica"}


def summary_fixture() -> dict:
    """A summary.json as aggregate() writes it, with the strings and nesting DVC must not see."""
    run = {
        "kid": {"mean": 0.05, "std": 0.01},
        "fid": {"mean": 80.0, "std": 2.0},
        "lpips": {"mean": 0.3, "std": 0.02},
        "mmd_mf": {"mean": None, "std": None, "null_reasons": REASON},
        "n_lesions": {"mean": 4.0, "std": 1.0},
        "lesion_rate_cls1": {"mean": 0.75, "std": 0.1},
        "lesion_rate_cls0": {"mean": 0.05, "std": 0.0},
        "area_median": {"mean": 12.0, "std": 3.0},
    }
    dice = {"dice_lesion_slices": {"mean": 0.4, "std": None, "null_reasons": {"std": "fewer than 2 seeds"}}}
    undefined = {"dice_lesion_slices": {"mean": None, "std": None, "null_reasons": REASON}}
    summary = {
        "runs": {"x0_lp1.5_sc0.5/fold0": run, "epsilon_lp2_sc0/fold1": {**run, "kid": {"mean": 0.1, "std": 0.0}}},
        "baseline_std": {"kid": 0.001, "fid": None, "lpips": 0.01, "mmd_mf": None},
        "baseline": {"kid": 0.002, "fid": 10.0, "lpips": 0.2, "mmd_mf": None, "lesion_rate_cls1": None},
        "statistics": {"kid": {"fam": {"test": "kruskal", "p": 0.5}}},
        "memorization": {"x0_lp1.5_sc0.5/fold0": {"synthetic": {"p5": 1.0, "mean": 2.0}}},
        "utility": {
            "real": {"fold0": {"per_seed": [], "summary": {"dice_lesion_slices": {"mean": 0.5, "std": 0.1}}}},
            "runs": {"x0_lp1.5_sc0.5/fold0": {"real+syn": {"summary": dice}, "syn": {"summary": undefined}}},
            "comparison": {},
            "settings": {"epochs": 2},
            "tau": 0.5,
        },
        "weights_sha256": {"inception": "ab" * 32},
        "versions": {"torch": "2.5"},
        "created": "2025-01-01T00:00:00",
    }
    summary["baseline"].update(lesion_rate_cls0=0.0, n_lesions=0.0, area_median=None)
    summary["baseline"]["null_reasons"] = {"mmd_mf": "not defined (NaN)"}
    return summary


def test_headline_is_flat_numeric_and_narrow():
    rows = headline(summary_fixture())
    assert set(rows) == {"x0_lp1.5_sc0.5/fold0", "epsilon_lp2_sc0/fold1", "baseline"}
    for key, row in rows.items():
        assert tuple(row) == COLUMNS and len(row) <= MAX_COLUMNS, key
        for col, value in row.items():
            assert value is None or type(value) is float, (key, col, value)  # never a string, bool or dict
    x0 = rows["x0_lp1.5_sc0.5/fold0"]
    assert x0["kid"] == 0.05 and x0["kid_std"] == 0.01 and x0["fid"] == 80.0 and x0["lpips"] == 0.3
    assert x0["mmd_mf"] is None  # undefined: null, not "not defined (NaN)"
    assert x0["lesion_rate_cls1"] == 0.75 and x0["lesion_rate_cls0"] == 0.05 and x0["n_lesions"] == 4.0
    assert (x0["dice_real"], x0["dice_real_syn"], x0["dice_syn"]) == (0.5, 0.4, None)
    eps = rows["epsilon_lp2_sc0/fold1"]
    assert eps["kid"] == 0.1 and eps["dice_real"] is None and eps["dice_real_syn"] is None  # no utility for it
    base = rows["baseline"]
    assert base["kid"] == 0.002 and base["kid_std"] == 0.001 and base["lesion_rate_cls1"] is None
    assert base["dice_real_syn"] is None


def test_headline_without_utility_and_with_nonfinite_numbers():
    summary = summary_fixture()
    del summary["utility"]
    summary["runs"]["x0_lp1.5_sc0.5/fold0"]["kid"] = {"mean": float("nan"), "std": float("inf")}
    rows = headline(summary)
    x0 = rows["x0_lp1.5_sc0.5/fold0"]
    assert x0["kid"] is None and x0["kid_std"] is None
    assert all(x0[c] is None for c in ("dice_real", "dice_real_syn", "dice_syn"))


def test_write_headline_one_file_per_run_and_fold_replaces_old(tmp_path):
    out = tmp_path / "headline"
    (out / "removed_run").mkdir(parents=True)
    (out / "removed_run" / "fold0.json").write_text("{}")
    write_headline(summary_fixture(), out)
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.json"))
    assert files == ["baseline.json", "epsilon_lp2_sc0/fold1.json", "x0_lp1.5_sc0.5/fold0.json"]
    text = (out / "x0_lp1.5_sc0.5" / "fold0.json").read_text()
    assert "NaN" not in text and "null_reasons" not in text
    assert json.loads(text)["mmd_mf"] is None
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.slow
def test_dvc_metrics_show_prints_a_narrow_row_per_run(tmp_path):
    """DVC reads the directory as one metrics file per run and fold: a few columns, a row each."""
    dvc = str(Path(sys.executable).with_name("dvc"))
    if not Path(dvc).exists():
        pytest.skip("dvc not installed beside this python")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "dvc.yaml").write_text("metrics:\n  - results/metrics/headline\n")
    write_headline(summary_fixture(), tmp_path / "results" / "metrics" / "headline")
    shown = subprocess.run([dvc, "metrics", "show"], cwd=tmp_path, capture_output=True, text=True, check=True)
    lines = shown.stdout.splitlines()
    header = lines[0].split()
    assert header[0] == "Path" and set(header[1:]) <= set(COLUMNS) and {"kid", "lpips", "fid"} <= set(header)
    assert any("x0_lp1.5_sc0.5/fold0.json" in line for line in lines)
    assert len(lines) == 1 + 3 and max(map(len, lines)) < 250, shown.stdout
