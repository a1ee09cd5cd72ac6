"""A tiny end-to-end metrics run: samples of a tiny model scored against the tiny cache's test slices."""

import json

import numpy as np
import pandas as pd
import pytest

from slimdiff.config import validate_config
from slimdiff.generation.runner import generate_to_dir
from slimdiff.generation.sampling import Condition
from slimdiff.io import read_json
from slimdiff.metrics.evaluate import (
    aggregate,
    evaluate_baseline,
    evaluate_images,
    evaluate_masks,
    merge_run_metrics,
)

CFG = dict(
    validate_config(
        {
            "metrics": {
                "lpips_pairs": 20,
                "zbin_lpips_pairs": 5,
                "kid_subsets": 5,
                "zbin_kid_subsets": 3,
                "mmd_subsets": 5,
                "batch_size": 16,
            }
        }
    )["metrics"]
)


@pytest.fixture(scope="module")
def samples(tiny_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    files = []
    for replica in (0, 1):
        conds = [Condition(z, c, 2) for z in range(4) for c in (0, 1)]
        files += generate_to_dir(
            tiny_model,
            root / f"replica{replica}",
            conds,
            seed=1,
            replica=replica,
            device="cpu",
            sampler_overrides={"steps": 3},
            grid=False,
        )
    return files


def test_run_metrics_end_to_end(tiny_cache, samples, metric_weights, tmp_path):
    cfg = dict(CFG, feature_cache=str(tmp_path / "features"))
    img = evaluate_images(tiny_cache, samples, tmp_path, 0, cfg, "x0_lp1.5_sc0.5", weights=metric_weights)
    assert [r["replica"] for r in img["replicas"]] == [0, 1]
    for r in img["replicas"]:
        assert r["n_synthetic"] == 16 and np.isfinite(r["kid_mean"]) and r["fid"] > 0 and 0 < r["lpips_mean"] < 1
    assert img["memorization"]["nn_ratio"] > 0
    per_zbin = pd.read_csv(tmp_path / "per_zbin.csv")
    assert set(per_zbin["z_bin"]) == {0, 1, 2, 3} and (per_zbin["n_synthetic"] == 8).all()
    assert (per_zbin["kid_subset_size"] <= per_zbin[["n_real", "n_synthetic"]].min(axis=1)).all()
    assert len(list((tmp_path / "features").glob("*.npy"))) == 4  # test, 2 replicas, train: once each

    msk = evaluate_masks(tiny_cache, samples, tmp_path, 0, cfg, "x0_lp1.5_sc0.5")
    assert len(msk["replicas"]) == 2 and (tmp_path / "morphology.csv").exists()
    assert len(pd.read_csv(tmp_path / "tau_sweep.csv")) == 9
    for r in msk["replicas"]:  # lesion counts per replica: every sample of both classes is counted
        assert r["lesion_stats"]["n_cls0"] + r["lesion_stats"]["n_cls1"] == 16
    assert msk["real_lesion_stats"]["n_lesions"] > 0 and msk["real_lesion_stats"]["lesion_rate_cls0"] == 0.0

    merged = merge_run_metrics(tmp_path / "image.json", tmp_path / "mask.json", tmp_path / "metrics.json")
    lesion_columns = {"n_lesions", "lesion_rate_cls1", "lesion_rate_cls0", "area_median"}
    assert set(merged["summary"]) == {"kid", "fid", "lpips", "mmd_mf"} | lesion_columns
    n_lesions = [r["lesion_stats"]["n_lesions"] for r in msk["replicas"]]
    assert merged["summary"]["n_lesions"]["mean"] == pytest.approx(np.mean(n_lesions))
    assert merged["summary"]["kid"]["mean"] == pytest.approx(np.mean([r["kid_mean"] for r in img["replicas"]]))
    assert merged["weights"]["vgg16-397923af.pth"]["sha256"] == metric_weights["vgg16-397923af.pth"]["sha256"]

    base = evaluate_baseline(tiny_cache, tmp_path / "baseline.json", 0, cfg, weights=metric_weights)
    assert base["n_train"] > base["n_test"] > 0 and base["kid_mean"] < min(r["kid_mean"] for r in img["replicas"])

    other = json.loads((tmp_path / "metrics.json").read_text())
    other["run"] = "epsilon_lp1.5_sc0.5"
    (tmp_path / "other.json").write_text(json.dumps(other))
    summary = aggregate(
        [tmp_path / "metrics.json", tmp_path / "other.json"],
        tmp_path / "baseline.json",
        tmp_path / "summary.json",
        tmp_path / "summary.csv",
        metric_weights,
    )
    assert set(summary["runs"]) == {"x0_lp1.5_sc0.5/fold0", "epsilon_lp1.5_sc0.5/fold0"}
    assert summary["baseline"]["kid"] == base["kid_mean"]
    assert "kruskal_p" in summary["statistics"]["kid"]["fold0/shared/sc0.5"]["between_predictions"]
    assert len(summary["weights_sha256"]) == 2
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 4
    memo = summary["memorization"]["x0_lp1.5_sc0.5/fold0"]
    assert 0 <= memo["suspect_frac"] <= 1 and memo["wasserstein_1"] >= 0 and memo["d_test"]["n"] == base["n_test"]

    # every result is standard JSON; an undefined metric is null with its reason next to it
    for name in ("image.json", "mask.json", "metrics.json", "baseline.json", "summary.json"):
        read_json(tmp_path / name)
    for r in read_json(tmp_path / "metrics.json")["replicas"]:
        if r["mmd_mf_mean"] is None:
            assert "lesions on a side" in r["null_reasons"]["mmd_mf_mean"]


def test_metrics_cli(tiny_cache, samples, metric_weights, tmp_path):
    from slimdiff.cli import metrics

    sample_dir = str(samples[0].parent.parent)
    assert (
        metrics.main(
            ["mask-metrics", "--cache", str(tiny_cache), "--samples", sample_dir, "--out", str(tmp_path / "m")]
        )
        == 0
    )
    assert (tmp_path / "m" / "mask.json").exists()
    assert (
        metrics.main(
            [
                "mask-metrics",
                "--cache",
                str(tiny_cache),
                "--samples",
                str(tmp_path / "none"),
                "--out",
                str(tmp_path / "n"),
            ]
        )
        == 2
    )
