"""Regime B: shared vs another bottleneck variant of one configuration, paired by fold.

Hand-made numbers with known answers for the statistics, the pairing of runs, summary.json, the table's
paired-difference rows and the figure; then the tiny pipeline with two folds x {shared, decoupled}.
"""

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_project
from test_figures import BASELINE, more_folds, per_replica, write_fixture
from test_workflow import snakemake

from slimdiff.cli import figures as figures_cli
from slimdiff.data.cache import load_cache
from slimdiff.data.splits import kfold_validation
from slimdiff.figures.table import DIFFERENCE, config_table, to_latex, to_markdown
from slimdiff.io import read_json, write_json
from slimdiff.metrics.evaluate import aggregate
from slimdiff.metrics.pairing import has_paired_folds, variant_pairs
from slimdiff.metrics.stats import paired_by_fold


def test_paired_differences_known_answers():
    """delta = decoupled - shared = (1, 2, 1): mean 4/3, sd sqrt(1/3), d_z 4/sqrt(3), all positive."""
    r = paired_by_fold({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 4.0, 2: 4.0})
    assert r["n_pairs"] == 3 and r["paired_folds"] == [0, 1, 2] and r["unpaired_folds"] == {}
    assert r["shared"]["mean"] == pytest.approx(2.0) and r["shared"]["sd"] == pytest.approx(1.0)  # ddof 1
    assert r["decoupled"]["mean"] == pytest.approx(10 / 3) and r["decoupled"]["sd"] == pytest.approx(math.sqrt(4 / 3))
    assert r["decoupled"]["per_fold"] == {0: 2.0, 1: 4.0, 2: 4.0}
    assert r["difference"]["per_fold"] == {0: 1.0, 1: 2.0, 2: 1.0}
    assert r["difference"]["mean"] == pytest.approx(4 / 3) and r["difference"]["sd"] == pytest.approx(math.sqrt(1 / 3))
    assert r["d_z"] == pytest.approx(4 / math.sqrt(3))
    assert r["sign_consistent"] is True and (r["n_positive"], r["n_negative"]) == (3, 0)
    assert r["wilcoxon_p"] == pytest.approx(0.25)  # exact, n = 3, every sign the same: the smallest p there is
    assert r["cliffs_delta"] == pytest.approx(6 / 9)  # decoupled (2, 4, 4) vs shared (1, 2, 3): 7 wins, 1 loss
    assert "null_reasons" not in r


def test_mixed_and_negative_signs():
    mixed = paired_by_fold({0: 0.0, 1: 0.0, 2: 0.0}, {0: 1.0, 1: -2.0, 2: 3.0})
    assert mixed["sign_consistent"] is False and (mixed["n_positive"], mixed["n_negative"]) == (2, 1)
    assert mixed["wilcoxon_p"] == pytest.approx(0.75)  # W+ = 1 + 3 of ranks 1..3: P(W <= 2) = 3/8, two-sided
    better = paired_by_fold({0: 0.5, 1: 0.6, 2: 0.9}, {0: 0.1, 1: 0.3, 2: 0.2}, labels=("shared", "zero_coupling"))
    assert set(better) >= {"shared", "zero_coupling"} and "decoupled" not in better
    assert better["sign_consistent"] is True and better["n_negative"] == 3 and better["d_z"] < 0
    assert better["wilcoxon_p"] == pytest.approx(0.25) and better["cliffs_delta"] == -1.0


def test_undefined_statistics_say_why(tmp_path):
    same = paired_by_fold({0: 1.0, 1: 2.0, 2: 3.0}, {0: 1.5, 1: 2.5, 2: 3.5})
    assert math.isnan(same["d_z"]) and "sd of the differences is 0" in same["null_reasons"]["d_z"]
    assert same["sign_consistent"] is True and same["wilcoxon_p"] is not None
    zero = paired_by_fold({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0})
    assert math.isnan(zero["d_z"]) and zero["wilcoxon_p"] is None and zero["sign_consistent"] is False
    assert zero["null_reasons"]["wilcoxon_p"] == "every paired difference is 0"
    write_json(tmp_path / "r.json", {"kid": zero})  # standard JSON: null with its reason
    back = read_json(tmp_path / "r.json")["kid"]
    assert back["d_z"] is None and back["null_reasons"]["d_z"] == "every paired difference is 0"


def test_missing_pairs_are_listed_never_passed_over():
    r = paired_by_fold({0: 1.0, 1: 2.0, 2: 3.0}, {0: 2.0, 1: 3.5, 3: 9.0, 4: None})
    assert r["paired_folds"] == [0, 1] and r["n_pairs"] == 2
    assert r["unpaired_folds"] == {
        2: "no decoupled run on this fold",
        3: "no shared run on this fold",
        4: "no shared run on this fold; decoupled value undefined on this fold",
    }
    assert r["wilcoxon_p"] == pytest.approx(0.5)  # n = 2: the exact minimum
    one = paired_by_fold({0: 1.0, 1: 2.0}, {0: 2.0, 1: float("nan")})
    assert one["n_pairs"] == 1 and one["unpaired_folds"] == {1: "decoupled value undefined on this fold"}
    assert math.isnan(one["d_z"]) and one["wilcoxon_p"] is None and one["sign_consistent"] is None
    assert one["null_reasons"]["d_z"] == "fewer than 2 paired folds (n = 1)"
    assert one["shared"]["per_fold"] == {0: 1.0} and math.isnan(one["shared"]["sd"])


def test_runs_pair_with_their_twin_of_the_same_configuration():
    folds = [("x0_lp1.5_sc0.5", f) for f in (0, 1, 2)] + [("x0_lp1.5_sc0.5-decoupled", f) for f in (0, 1)]
    folds += [("x0_lp1.5_sc0.0", 0)] + [("x0_lp1.5_sc0.0-zero_coupling", f) for f in (0, 1, 2)]
    folds += [("x0_lp2.0_sc0.5-decoupled", f) for f in (0, 1)] + [("v_lp1.5_sc0.5", 0)]
    pairs = variant_pairs(folds)
    assert set(pairs) == {"x0_lp1.5_sc0.5", "x0_lp1.5_sc0.0"}  # no shared x0_lp2.0_sc0.5: nothing to pair
    assert pairs["x0_lp1.5_sc0.5"]["decoupled"] == {
        "run": "x0_lp1.5_sc0.5-decoupled",
        "paired_folds": [0, 1],
        "unpaired_folds": {2: "no decoupled run on this fold"},
    }
    assert pairs["x0_lp1.5_sc0.0"]["zero_coupling"]["paired_folds"] == [0]
    assert has_paired_folds(pairs) and not has_paired_folds({"x0_lp1.5_sc0.0": pairs["x0_lp1.5_sc0.0"]})


def write_metrics(root, values: dict[tuple[str, int], float]) -> list:
    """metrics.json files whose replicas average to the given KID (other metrics fixed, MMD-MF undefined)."""
    files = []
    for (run, fold), kid in values.items():
        replicas = [
            {"replica": r, "kid_mean": kid + d, "fid": 10.0 + fold, "lpips_mean": 0.3, "mmd_mf_mean": None}
            for r, d in enumerate((-0.01, 0.01))
        ]
        summary = {
            "kid": {"mean": kid, "std": 0.014},
            "fid": {"mean": 10.0 + fold, "std": 0.0},
            "lpips": {"mean": 0.3, "std": 0.0},
            "mmd_mf": {"mean": None, "std": None, "null_reasons": {"mean": "too few lesions", "std": "too few"}},
        }
        path = root / f"{run}-fold{fold}.json"
        write_json(path, {"run": run, "fold": fold, "replicas": replicas, "summary": summary})
        files.append(path)
    write_json(root / "baseline.json", {"kid_mean": 0.0, "fid": 0.0, "lpips_mean": 0.2, "mmd_mf_mean": 0.1})
    return files


def test_summary_has_regime_b_only_for_twins_on_two_folds(tmp_path):
    values = {("x0_lp1.5_sc0.5", f): 0.1 + f / 100 for f in (0, 1, 2)}
    values.update({("x0_lp1.5_sc0.5-decoupled", f): 0.2 + f / 50 for f in (0, 1, 2)})
    values.update({("x0_lp1.5_sc0.0", 0): 0.3, ("x0_lp1.5_sc0.0-zero_coupling", 0): 0.2})
    values.update({("x0_lp1.5_sc0.0-zero_coupling", 1): 0.2, ("epsilon_lp1.5_sc0.5", 0): 0.5})
    files = write_metrics(tmp_path, values)
    aggregate(files, tmp_path / "baseline.json", tmp_path / "summary.json", tmp_path / "summary.csv")
    regime_b = read_json(tmp_path / "summary.json")["regime_b"]
    assert set(regime_b) == {"x0_lp1.5_sc0.5", "x0_lp1.5_sc0.0"}
    comparison = regime_b["x0_lp1.5_sc0.5"]["decoupled_vs_shared"]
    assert comparison["runs"] == {"shared": "x0_lp1.5_sc0.5", "decoupled": "x0_lp1.5_sc0.5-decoupled"}
    kid = comparison["kid"]
    assert kid["shared"]["per_fold"] == pytest.approx({"0": 0.10, "1": 0.11, "2": 0.12})  # the summary means
    assert kid["difference"]["per_fold"] == pytest.approx({"0": 0.10, "1": 0.11, "2": 0.12})
    assert kid["wilcoxon_p"] == pytest.approx(0.25) and kid["sign_consistent"] is True
    assert kid["d_z"] == pytest.approx(0.11 / 0.01)
    fid = comparison["fid"]  # the same FID for both on each fold
    assert fid["d_z"] is None and fid["null_reasons"]["d_z"] == "every paired difference is 0"
    mmd = comparison["mmd_mf"]  # undefined on every fold: no pair, each fold says why
    assert mmd["n_pairs"] == 0 and "shared value undefined" in mmd["unpaired_folds"]["0"]
    assert mmd["d_z"] is None and mmd["null_reasons"]["d_z"] == "fewer than 2 paired folds (n = 0)"
    zero = regime_b["x0_lp1.5_sc0.0"]["zero_coupling_vs_shared"]  # one common fold: listed, not compared
    assert zero["paired_folds"] == [0] and zero["unpaired_folds"] == {"1": "no shared run on this fold"}
    assert "needs 2" in zero["not_compared"] and "kid" not in zero

    one_fold = write_metrics(tmp_path / "one", {("x0_lp1.5_sc0.5", 0): 0.1, ("x0_lp1.5_sc0.5-decoupled", 0): 0.2})
    summary = aggregate(one_fold, tmp_path / "one" / "baseline.json", tmp_path / "s.json", tmp_path / "s.csv")
    assert "regime_b" not in summary and "regime_b" not in read_json(tmp_path / "s.json")


@pytest.fixture
def regime_b(tmp_path):
    """summary.json's regime_b (as read back) for the test_figures fixture: decoupled better on folds 1 and 2."""
    shared, decoupled = [0.10, 1.00, 1.10], [0.70, 0.80, 0.90]
    comparison = {"runs": {"shared": "x0_lp1.5_sc0.5", "decoupled": "x0_lp1.5_sc0.5-decoupled"}}
    comparison.update(paired_folds=[0, 1, 2], unpaired_folds={})
    for m in ("kid", "lpips", "mmd_mf", "fid"):
        comparison[m] = paired_by_fold(dict(enumerate(shared)), dict(enumerate(decoupled)))
    comparison["lpips"] = paired_by_fold({0: 0.1, 1: 0.2, 2: 0.3}, {0: 0.2, 1: 0.3, 2: 0.5})
    zero = {"runs": {"shared": "x0_lp1.5_sc0.0", "zero_coupling": "x0_lp1.5_sc0.0-zero_coupling"}}
    zero.update(paired_folds=[0], unpaired_folds={1: "no shared run on this fold"}, not_compared="needs 2")
    data = {"x0_lp1.5_sc0.5": {"decoupled_vs_shared": comparison}, "x0_lp1.5_sc0.0": {"zero_coupling_vs_shared": zero}}
    write_json(tmp_path / "rb.json", data)
    return read_json(tmp_path / "rb.json")


def test_table_ends_the_across_folds_section_with_the_paired_difference(regime_b):
    table = config_table(more_folds(per_replica()), BASELINE, regime_b)
    diff = table[table["kind"] == DIFFERENCE].set_index("variant")
    assert list(diff.index) == ["decoupled", "zero_coupling"] and set(diff["family"]) == {"across folds"}
    assert diff.loc["decoupled", "fold"] == "0,1,2" and diff.loc["decoupled", "lpips_wilcoxon_p"] == 0.25
    assert diff.loc["decoupled", "kid_mean"] == pytest.approx(np.mean([0.6, -0.2, -0.2]))
    assert table.iloc[-1]["run"].startswith("real vs real")
    md = to_markdown(table)
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in md.splitlines()
        if line.startswith("| ")
    }
    kid, lpips = rows["Δ decoupled − shared: x0, p=1.5, sc 0.5 (folds 0, 1, 2)"][:2]
    assert kid == "+0.0667 ± 0.4619; d_z 0.14; decoupled better 2/3 (mixed); p 1.00"
    assert lpips == "+0.1333 ± 0.0577; d_z 2.31; shared better 3/3 (consistent); p 0.25"
    assert rows["Δ zero_coupling − shared: x0, p=1.5, sc 0 (folds 0)"][0] == "n/a (1 paired fold)"
    section = md.split("*across folds")[1].split("real vs real")[0]
    assert "Δ decoupled" in section and "Δ zero_coupling" in section  # inside the across-folds section
    bold = [line for line in md.splitlines() if line.startswith("| ") and "**" in line.split("|")[2]]
    assert len(bold) == 2  # the difference rows are never ranked
    assert "Paired difference (Regime B" in md and "sample std (ddof 1)" in md
    tex = to_latex(table)
    assert r"$\Delta$ decoupled $-$ shared" in tex and r"$d_z$ 2.31; shared better 3/3 (consistent); $p$ 0.25" in tex
    assert "Δ" not in to_markdown(config_table(more_folds(per_replica()), BASELINE))  # no regime_b, no rows


@pytest.mark.slow
def test_paired_figure_only_with_regime_b(tmp_path, regime_b):
    write_fixture(tmp_path)
    assert figures_cli.main(["--results", str(tmp_path), "--dpi", "60"]) == 0
    assert not (tmp_path / "figures" / "coupling_by_fold.png").exists()
    summary = read_json(tmp_path / "metrics" / "summary.json")
    write_json(tmp_path / "metrics" / "summary.json", {**summary, "regime_b": regime_b})
    assert figures_cli.main(["--results", str(tmp_path), "--dpi", "60"]) == 0
    for ext, magic in (("png", b"\x89PNG"), ("pdf", b"%PDF")):
        assert (tmp_path / "figures" / f"coupling_by_fold.{ext}").read_bytes()[:4] == magic
    assert "Δ decoupled − shared" in (tmp_path / "paper" / "table.md").read_text()


@pytest.mark.pipeline
@pytest.mark.scenario
def test_pipeline_with_two_folds_and_two_variants(tmp_path, metric_weights):
    """A camera-ready protocol through Snakemake: upstream's k-fold split as a view of the cache, {shared,
    bottleneck_only} on both folds, two replicas scored as one merged pool (Regime B) with MMD-PL and the
    per-z-bin KID of a few bins; regime_b, the table's MMD-PL column and difference row, the figure."""
    proj = copy_project(tmp_path / "proj")
    path = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["protocols"] = {
        "camera_ready": {
            "split": {"method": "kfold", "n_folds": 2, "seed": 42},
            "generation": {"replicas": 2},
            "scoring": {"regime": "merged", "zbin_kid": {"bins": 2, "subset_size": 4, "subsets": 3}},
        }
    }
    cfg["experiments"] = {
        "protocol": "camera_ready",
        "prediction": ["x0"],
        "p": [1.5],
        "self_conditioning": [0.5],
        "variant": ["shared", "bottleneck_only"],
    }
    cfg["model"]["bottleneck_only"] = {"channels": [8, 16], "num_head_channels": 8, "norm_num_groups": 4}
    cfg["generation"]["job_unit"] = "replica"  # one sampling process per run, fold and replica
    cfg["sampler"]["steps"] = 2
    cfg["training"]["max_epochs"] = 1
    cfg["metrics"]["threads"] = 1  # two image-metric jobs side by side on the two cores
    cfg["utility"]["enabled"] = False  # not checked here (test_workflow and test_utility are)
    path.write_text(yaml.safe_dump(cfg))
    targets = ["results/paper/table.md", "results/figures/coupling_by_fold.png"]
    proc = snakemake(proj, "--cores", "2", *targets, "--resources", "gpu=2", snakefile=proj / "Snakefile")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shared, twin = "x0_lp1.5_sc0.5@camera_ready", "x0_lp1.5_sc0.5-bottleneck_only@camera_ready"

    cache, view = load_cache(proj / "results" / "cache"), load_cache(proj / "results" / "splits" / "camera_ready")
    pool = sorted(set(cache.index["subject"]) - set(cache.splits["test"]))
    assert view.splits["test"] == cache.splits["test"]  # one test set for every protocol
    assert [set(f["val"]) for f in view.splits["folds"]] == kfold_validation(pool, 2, 42)  # upstream's folds
    for run in (shared, twin):
        for fold in (0, 1):
            metrics = read_json(proj / "results" / "runs" / run / f"fold{fold}" / "metrics" / "metrics.json")
            assert metrics["scoring"] == "merged" and len(metrics["replicas"]) == 1  # one merged pool per fold
            pool_entry = metrics["replicas"][0]
            assert pool_entry["pooled_replicas"] == [0, 1] and pool_entry["n_synthetic"] == 2 * 3 * 2
            assert {"kid", "lpips", "mmd_mf", "mmd_pl"} <= set(metrics["summary"])
            assert "frac_bright_real" in pool_entry["paired_lesion"]  # MMD-PL's falsification number
            assert [row["z_bin"] for row in metrics["zbin_kid"]] == [0, 2]  # floor(linspace(0, 2, 2))

    summary = read_json(proj / "results" / "metrics" / "summary.json")
    comparison = summary["regime_b"][shared]["bottleneck_only_vs_shared"]
    assert comparison["paired_folds"] == [0, 1] and comparison["unpaired_folds"] == {}
    assert "mmd_pl" in comparison and set(summary["zbin_kid"]) == {shared, twin}
    for metric in ("kid", "lpips", "fid"):
        r = comparison[metric]
        assert r["n_pairs"] == 2 and set(r["shared"]["per_fold"]) == {"0", "1"}
        for fold in ("0", "1"):  # the per-fold value is the merged pool's, the run's metrics.json summary mean
            run = summary["runs"][f"{twin}/fold{fold}"]
            assert r["bottleneck_only"]["per_fold"][fold] == pytest.approx(run[metric]["mean"])
        assert r["wilcoxon_p"] is None or r["wilcoxon_p"] >= 0.5  # n = 2: 0.5 is the smallest exact p
    table = pd.read_csv(proj / "results" / "paper" / "table.csv")
    assert (table["kind"] == DIFFERENCE).sum() == 1 and "mmd_pl_mean" in table
    md = (proj / "results" / "paper" / "table.md").read_text()
    assert "| KID | LPIPS | MMD-MF | MMD-PL | FID |" in md and "Merged-pool runs" in md
    assert "Δ bottleneck_only − shared: x0, p=1.5, sc 0.5 (folds 0, 1)" in md
    assert (proj / "results" / "figures" / "coupling_by_fold.pdf").exists()
