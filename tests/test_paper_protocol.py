"""The paper's protocols: Table 1 and the camera-ready grid, each with its own split, training, replicas and
scoring, from one cache and one command (issue #33).

The dry run of config/paper.yaml (tests/test_paper_dag.py) checks the plan against the spec's numbers
(evaluation.md §6.5 and §7, method.md §7.3-7.4): 21 Table 1 trainings on one split, 4 architectures x 3 folds
for the camera-ready table, 5 replicas x 50 and 12 replicas x 150 per (z-bin, class), one scoring job per (run,
fold). The split views are checked on a real (tiny) cache: the same test set, upstream's folds, the single
split's 10 %.
"""

import pytest
from conftest import REPO

from slimdiff.config import ConfigError, resolve_config, validate_config
from slimdiff.data.cache import load_cache
from slimdiff.data.splits import fold_membership, kfold_validation, write_split_view
from slimdiff.experiments import expand_runs, run_folds, run_protocols

TABLE1_TRAININGS = 9 + 9 + 3  # Lp x prediction at sc 0.5, the same at sc 0, sc 0.8 at Lp 2.0 (method.md §7.3: 21)
CAMERA_READY = ["shared", "decoupled", "zero_coupling", "bottleneck_only"]  # x 3 folds (method.md §7.4)
Z_BINS = 30


def paper_config() -> dict:
    return validate_config(resolve_config([str(REPO / "config" / "paper.yaml")]))


def test_paper_config_has_both_protocols():
    config = paper_config()
    runs, protocols = expand_runs(config), run_protocols(config)
    table1 = [r for r in runs if r.endswith("@table1")]
    camera = [r for r in runs if r.endswith("@camera_ready")]
    assert len(table1) == TABLE1_TRAININGS and len(camera) == len(CAMERA_READY) and len(runs) == 25
    assert all(runs[r]["training"]["folds"] == [0] for r in table1)
    assert all(runs[r]["training"]["folds"] == [0, 1, 2] for r in camera)
    assert len(run_folds(runs)) == TABLE1_TRAININGS + 3 * len(CAMERA_READY)
    t1 = protocols["x0_lp1.5_sc0.5@table1"]
    assert t1["split"] == {"method": "stratified", "n_folds": 1, "val_fraction": 0.1, "seed": 42, "burden_strata": 4}
    assert (t1["generation"]["replicas"], t1["generation"]["n_per_condition"]) == (5, 50)
    assert t1["scoring"]["regime"] == "per_replica"
    cr = protocols["x0_lp1.5_sc0.5@camera_ready"]
    assert cr["split"]["method"] == "kfold" and (cr["split"]["n_folds"], cr["split"]["seed"]) == (3, 42)
    assert (cr["generation"]["replicas"], cr["generation"]["n_per_condition"]) == (12, 150)  # 108,000 per cell
    assert cr["scoring"] == {"regime": "merged", "zbin_kid": {"bins": 7, "subset_size": 30, "subsets": 50}}
    # the same cell, two trainings: 500 epochs at batch 16 on one device; 1,000 at 16 x 2 devices (effective 32)
    t1_train, cr_train = runs["x0_lp1.5_sc0.5@table1"]["training"], runs["x0_lp1.5_sc0.5@camera_ready"]["training"]
    assert (t1_train["max_epochs"], t1_train["batch_size"], t1_train["devices"]) == (500, 16, 1)
    assert (cr_train["max_epochs"], cr_train["batch_size"], cr_train["devices"]) == (1000, 16, 2)
    assert cr_train["early_stopping_patience"] == 25
    twin = runs["x0_lp1.5_sc0.0-zero_coupling@camera_ready"]
    assert twin["loss"]["mask_p"] == 2.0 and twin["loss"]["uncertainty_weighting"] is True
    bottleneck = runs["x0_lp1.5_sc0.0-bottleneck_only@camera_ready"]
    assert bottleneck["model"]["variant"] == "bottleneck_only" and bottleneck["training"]["batch_size"] == 4


def test_the_camera_ready_variants_are_compared_with_the_shared_cell():
    """Upstream's table sets shared, decoupled and zero-coupling (sc 0) side by side: all pair with shared."""
    from slimdiff.metrics.pairing import variant_pairs

    pairs = variant_pairs(run_folds(expand_runs(paper_config())))
    camera = pairs["x0_lp1.5_sc0.5@camera_ready"]
    assert set(camera) == {"decoupled", "zero_coupling", "bottleneck_only"}
    assert all(p["paired_folds"] == [0, 1, 2] for p in camera.values())
    assert camera["bottleneck_only"]["run"] == "x0_lp1.5_sc0.0-bottleneck_only@camera_ready"
    assert not any(r.endswith("@table1") for r in pairs)  # Table 1 has no other variant


@pytest.fixture(scope="module")
def cache(tiny_cache):
    return load_cache(tiny_cache)


def test_split_views_keep_the_test_set_and_change_the_folds(cache, tmp_path):
    single = write_split_view(
        cache.path, tmp_path / "t1", {"method": "stratified", "n_folds": 1, "val_fraction": 0.1}, "t1"
    )
    pool = sorted(set(cache.index["subject"]) - set(cache.splits["test"]))
    assert single["test"] == cache.splits["test"] and len(single["folds"]) == 1
    assert len(single["folds"][0]["val"]) == max(1, round(0.1 * len(pool)))
    view = load_cache(tmp_path / "t1")  # a complete cache: the arrays are the cache's, the folds the view's
    assert view.images.shape == cache.images.shape and view.splits["fold_method"] == "stratified"
    member = fold_membership(view.index, 0)
    assert set(view.index.loc[member == "test", "subject"]) == set(cache.splits["test"])
    assert set(view.index.loc[member == "val", "subject"]) == set(single["folds"][0]["val"])

    upstream = write_split_view(cache.path, tmp_path / "cr", {"method": "kfold", "n_folds": 2, "seed": 42}, "cr")
    assert [set(f["val"]) for f in upstream["folds"]] == kfold_validation(pool, 2, 42)
    assert set(upstream["folds"][0]["val"]) | set(upstream["folds"][1]["val"]) == set(pool)

    given = write_split_view(
        cache.path, tmp_path / "own", {"method": "subjects", "folds": [pool[:1], pool[1:2]]}, "own"
    )
    assert [f["val"] for f in given["folds"]] == [pool[:1], pool[1:2]]
    with pytest.raises(ConfigError, match="protocols.bad.split: .* are test subjects"):
        write_split_view(cache.path, tmp_path / "bad", {"method": "subjects", "folds": [cache.splits["test"]]}, "bad")


def test_upstream_kfold_is_sklearns():
    sklearn = pytest.importorskip("sklearn.model_selection")
    for n in (6, 7, 52, 66):
        pool = [f"sub-{i:05d}" for i in range(n)]
        expected = [{pool[j] for j in test} for _, test in sklearn.KFold(3, shuffle=True, random_state=42).split(pool)]
        assert kfold_validation(pool, 3, 42) == expected


def test_merged_scoring_pools_every_replica_under_one_entry():
    import numpy as np

    from slimdiff.metrics.protocol_scoring import scored_sets, set_info

    replicas = {r: {"images": np.full((3, 2, 2), r), "z_bin": np.arange(3)} for r in (0, 1, 2)}
    assert scored_sets(replicas, {"regime": "per_replica"}) is replicas
    merged = scored_sets(replicas, {"regime": "merged"})
    assert list(merged) == [0] and len(merged[0]["images"]) == 9
    assert set_info(merged[0]) == {"pooled_replicas": [0, 1, 2]} and set_info(replicas[1]) == {}


def test_camera_ready_zbin_kid_bins_and_fold_aggregate():
    from scipy import stats

    from slimdiff.metrics.protocol_scoring import camera_ready_bins, zbin_kid_across_folds

    assert camera_ready_bins(30, 7) == [0, 4, 9, 14, 19, 24, 29]  # evaluation.md §1.4
    assert camera_ready_bins(3, 7) == [0, 1, 2]
    metrics = [
        {"run": "r@cr", "fold": f, "zbin_kid": [{"z_bin": 0, "kid_mean": v}, {"z_bin": 4, "kid_mean": None}]}
        for f, v in enumerate((0.1, 0.2, 0.3))
    ]
    out = zbin_kid_across_folds(metrics)
    entry = out["r@cr"]["0"]
    assert entry["mean"] == pytest.approx(0.2) and entry["sd"] == pytest.approx(0.1) and entry["n_folds"] == 3
    assert entry["ci95"] == pytest.approx(stats.t.ppf(0.975, 2) * 0.1 / 3**0.5)  # t = 4.303 with 3 folds
    assert "4" not in out["r@cr"]  # undefined on every fold: no entry


def test_paired_lesion_summary_across_folds():
    """MMD-PL's per-feature W1 and bright fraction: per fold the mean of its scored sets, then mean and
    population std across folds (upstream's paired_lesion_mmd_summary)."""
    from slimdiff.metrics.protocol_scoring import paired_lesion_across_folds

    def fold(f: int, w: float, bright: float) -> dict:
        pl = {"wasserstein": {"delta": w, "z_in": None}, "frac_bright_synth": bright, "frac_bright_real": 0.235}
        return {"run": "r@cr", "fold": f, "replicas": [{"replica": 0, "paired_lesion": pl}]}

    out = paired_lesion_across_folds(
        [fold(0, 0.1, 0.1), fold(1, 0.3, 0.2), {"run": "old", "fold": 0, "replicas": [{}]}]
    )
    assert set(out) == {"r@cr"}
    assert out["r@cr"]["wasserstein"]["delta"]["mean"] == pytest.approx(0.2)
    assert out["r@cr"]["wasserstein"]["delta"]["std"] == pytest.approx(0.1)  # ddof 0
    assert "z_in" not in out["r@cr"]["wasserstein"]  # undefined on every fold
    assert out["r@cr"]["frac_bright_synth"]["mean"] == pytest.approx(0.15)
    assert out["r@cr"]["frac_bright_real"]["std"] == 0.0


def test_camera_ready_table_rows_of_merged_pools():
    """Per fold: the pool's value ± its spread over subsets; across folds: mean ± population std (ddof 0)."""
    import pandas as pd

    from slimdiff.figures.table import ACROSS_FOLDS, config_table, to_markdown

    rows = []
    for run in ("x0_lp1.5_sc0.5@cr", "x0_lp1.5_sc0.5-bottleneck_only@cr"):
        for fold, kid in enumerate((0.0188, 0.0184, 0.0261)):
            values = {"kid": kid, "lpips": 0.30, "mmd_mf": 1.0 + fold, "mmd_pl": 2.0 * fold, "fid": 10.0}
            within = {"kid_within": 0.0007, "lpips_within": 0.06, "mmd_mf_within": 0.5, "mmd_pl_within": 1.5}
            rows.append({"run": run, "fold": fold, "replica": 0, "scoring": "merged", **values, **within})
    table = config_table(pd.DataFrame(rows), {"kid": 0.0, "lpips": 0.2, "mmd_mf": 0.1, "mmd_pl": 0.3, "fid": 1.0})
    per_fold = table[(table["run"] == "x0_lp1.5_sc0.5@cr") & (table["fold"] == "0")].iloc[0]
    assert per_fold["kid_mean"] == 0.0188 and per_fold["kid_std"] == 0.0007 and per_fold["mmd_pl_std"] == 1.5
    across = table[(table["run"] == "x0_lp1.5_sc0.5@cr") & (table["family"] == ACROSS_FOLDS)].iloc[0]
    # the paper's shared camera-ready KID, 0.021 ± 0.004, from its per-fold values (evaluation.md §6.4)
    assert across["kid_mean"] == pytest.approx(0.0211) and across["kid_std"] == pytest.approx(0.0035393, rel=1e-4)
    md = to_markdown(table)
    assert "| KID | LPIPS | MMD-MF | MMD-PL | FID |" in md and "cr, fold 0, shared, sc 0.5" in md
    assert "x0, p=1.5, sc 0.5 (bottleneck_only, cr)" in md and "Merged-pool runs" in md
