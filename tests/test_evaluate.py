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

# Both tests score the module-scoped samples: one worker makes them once (make test: --dist loadfile).
pytestmark = pytest.mark.xdist_group("evaluate_samples")

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


@pytest.mark.slow
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
    assert set(merged["summary"]) == {"kid", "fid", "lpips", "mmd_mf", "mmd_pl"} | lesion_columns
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


def test_collect_run_tables_takes_run_and_fold_from_the_caller(tmp_path):
    from slimdiff.metrics.evaluate import collect_run_tables

    files = []
    for i in range(2):
        files.append(tmp_path / f"table{i}.csv")  # nothing in the path says which run or fold
        pd.DataFrame({"z_bin": [0, 1], "kid_mean": [0.1 * i, 0.2]}).to_csv(files[-1], index=False)
    table = collect_run_tables(files, [("x0_lp1.5_sc0.5", 0), ("epsilon_lp1.5_sc0.5", 3)], tmp_path / "all.csv")
    assert table["run"].tolist() == ["x0_lp1.5_sc0.5"] * 2 + ["epsilon_lp1.5_sc0.5"] * 2
    assert table["fold"].tolist() == [0, 0, 3, 3]
    assert pd.read_csv(tmp_path / "all.csv").equals(table)
    with pytest.raises(ValueError, match="2 tables for 1"):
        collect_run_tables(files, [("x0_lp1.5_sc0.5", 0)], tmp_path / "bad.csv")


def test_every_metric_is_read_from_its_json_key(tmp_path):
    """merge_run_metrics, the summary table, the baseline and its spread all read the same key per metric."""
    from slimdiff.names import METRIC_NAMES, METRICS

    METRIC_KEYS = {m.name: m.entry_key for m in METRICS}  # the one definition of where each value sits
    assert METRIC_KEYS == {
        "kid": "kid_mean",
        "fid": "fid",
        "lpips": "lpips_mean",
        "mmd_mf": "mmd_mf_mean",
        "mmd_pl": "mmd_pl_mean",
    }
    assert METRIC_NAMES == tuple(METRIC_KEYS)
    values = {"kid_mean": 0.1, "fid": 20.0, "lpips_mean": 0.3, "mmd_mf_mean": 0.4, "mmd_pl_mean": 0.5}
    mask_keys = ["mmd_mf_mean", "mmd_pl_mean"]

    def replica(r: int, scale: float, keys) -> dict:
        return {"replica": r, **{k: values[k] * scale for k in keys}}

    common = {"memorization": {}, "n_real_test": 5, "weights": {}, "versions": {}}
    metric_files = []
    for j, run in enumerate(("x0_lp1.5_sc0.5", "epsilon_lp1.5_sc0.5")):
        scales = (1 + 2 * j, 2 + 2 * j)  # replica 0 and 1
        image_keys = [k for k in values if k not in mask_keys]
        img = {"run": run, "fold": 0, "replicas": [replica(r, s, image_keys) for r, s in enumerate(scales)], **common}
        msk = {"replicas": [replica(r, s, mask_keys) for r, s in enumerate(scales)]}
        (tmp_path / "image.json").write_text(json.dumps(img))
        (tmp_path / "mask.json").write_text(json.dumps(msk))
        metric_files.append(tmp_path / f"{run}.json")
        merged = merge_run_metrics(tmp_path / "image.json", tmp_path / "mask.json", metric_files[-1])
        for metric, key in METRIC_KEYS.items():
            assert merged["summary"][metric]["mean"] == pytest.approx(values[key] * np.mean(scales))
    stds = {"kid_std": 0.01, "lpips_std": 0.03, "mmd_mf_std": 0.04, "mmd_pl_std": 0.05}
    (tmp_path / "baseline.json").write_text(json.dumps({**values, **stds}))
    summary = aggregate(metric_files, tmp_path / "baseline.json", tmp_path / "s.json", tmp_path / "s.csv")
    assert {m: summary["baseline"][m] for m in METRIC_NAMES} == {m: values[k] for m, k in METRIC_KEYS.items()}
    assert summary["baseline_std"] == {"kid": 0.01, "fid": None, "lpips": 0.03, "mmd_mf": 0.04, "mmd_pl": 0.05}
    table = pd.read_csv(tmp_path / "s.csv")
    for metric, key in METRIC_KEYS.items():
        assert table[metric].to_numpy() == pytest.approx(values[key] * np.array([1, 2, 3, 4]))
