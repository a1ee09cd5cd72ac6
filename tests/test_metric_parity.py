"""This project's metrics against upstream's own metric code on the same inputs (fixtures made in upstream's
environment by tests/upstream/make_metric_fixtures.py; `make upstream-fixtures` rebuilds them)."""

import json
from pathlib import Path

import numpy as np
import pytest

from slimdiff.metrics.morphology import FEATURES, lesion_features, mmd_mf, wasserstein_per_feature

FIXTURES = Path(__file__).parent / "data" / "upstream" / "metrics"


@pytest.fixture(scope="module")
def morphology():
    arrays = np.load(FIXTURES / "mask_morphology.npz")
    return {k: arrays[k] for k in arrays.files}, json.loads((FIXTURES / "mask_morphology.json").read_text())


def features(masks: np.ndarray) -> np.ndarray:
    return lesion_features(masks)[FEATURES].to_numpy(dtype=np.float64)


def test_lesions_and_their_nine_features_equal_upstreams(morphology):
    arrays, record = morphology
    assert record["feature_names"] == FEATURES
    for side in ("real", "synth"):  # real masks in {-1, +1}; synthetic ones continuous, binarised at > 0
        ours, theirs = features(arrays[f"{side}_masks"]), arrays[f"{side}_features"]
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


def test_mmd_mf_equals_upstreams_with_its_defaults_and_seed(morphology):
    """Subset size min(500, n_real, n_synth), 100 subsets without replacement, population std: upstream's
    numbers to rounding, on upstream's seed."""
    arrays, record = morphology
    real, fake = lesion_features(arrays["real_masks"]), lesion_features(arrays["synth_masks"])
    out = mmd_mf(real, fake, subsets=record["num_subsets"], subset_size=500, seed=record["seed"])
    assert out["mmd_mf_subset_size"] == record["subset_size"]
    assert (out["n_real_lesions"], out["n_fake_lesions"]) == (record["n_real_lesions"], record["n_synth_lesions"])
    assert out["mmd_mf_mean"] == pytest.approx(record["mmd_mf_mean"], rel=1e-9)
    assert out["mmd_mf_std"] == pytest.approx(record["mmd_mf_std"], rel=1e-9)


def test_per_feature_wasserstein_equals_upstreams(morphology):
    arrays, record = morphology
    ours = wasserstein_per_feature(lesion_features(arrays["real_masks"]), lesion_features(arrays["synth_masks"]))
    for name, value in record["wasserstein"].items():
        assert ours[name] == pytest.approx(value, rel=1e-9), name


# ---- Regime A statistics (Table 1): Friedman + Nemenyi, Kruskal-Wallis + Dunn (BH), Cliff's delta ----

UPSTREAM_PREDICTION = {"epsilon": "epsilon", "velocity": "v", "x0": "x0"}


@pytest.fixture(scope="module")
def regime_a():
    return json.loads((FIXTURES / "regime_a.json").read_text())


@pytest.mark.parametrize("case", ["separated", "tied"])
def test_regime_a_statistics_equal_upstreams(regime_a, case):
    import pandas as pd

    from slimdiff.metrics.stats import compare_configurations

    up = regime_a[case]
    rows = pd.DataFrame(up["rows"])
    family = pd.DataFrame(
        {
            "prediction": rows["prediction_type"].map(UPSTREAM_PREDICTION),
            "p": rows["lp_norm"],
            "replica": rows["replica_id"],
            "kid": rows["kid_global"],
        }
    )
    ours = compare_configurations(family, "kid")
    between = ours["between_predictions"]
    assert between["kruskal_stat"] == pytest.approx(up["between"]["kruskal_stat"], rel=1e-12)
    assert between["kruskal_p"] == pytest.approx(up["between"]["p_value"], rel=1e-9)
    dunn = {f"{d['a']}_vs_{d['b']}": d["p_bh"] for d in between["dunn"]}
    deltas = {f"{d['a']}_vs_{d['b']}": d["delta"] for d in ours["cliffs_delta"]}
    for pair, p_bh in up["between"]["posthoc"].items():  # upstream runs Dunn only when Kruskal-Wallis p < 0.05
        a, b = pair.split("_vs_")
        ours_pair = f"{UPSTREAM_PREDICTION[a]}_vs_{UPSTREAM_PREDICTION[b]}"
        assert dunn[ours_pair] == pytest.approx(p_bh, rel=1e-9), pair
        assert deltas[ours_pair] == pytest.approx(up["between"]["cliffs_delta"][pair], abs=1e-12), pair
    for group, result in up["within"].items():
        mine = ours["within_prediction"][UPSTREAM_PREDICTION[group]]
        assert mine["friedman_stat"] == pytest.approx(result["friedman_stat"], rel=1e-12)
        assert mine["friedman_p"] == pytest.approx(result["p_value"], rel=1e-9)
        nemenyi = {f"{n['a']}_vs_{n['b']}": n["p"] for n in mine["nemenyi"]}
        for pair, p in result["posthoc"].items():  # upstream runs Nemenyi only when Friedman p < 0.05
            a, b = (float(x) for x in pair.split("_vs_"))
            assert nemenyi[f"{a}_vs_{b}"] == pytest.approx(p, rel=1e-6, abs=1e-9), (group, pair)


# ---- LPIPS: upstream's pairing protocol (draws, cap, clamp, per-z-bin seeds) ----


@pytest.fixture(scope="module")
def lpips_case(metric_weights):
    from slimdiff.metrics.lpips_metric import LPIPSMetric

    arrays = np.load(FIXTURES / "lpips.npz")
    return (
        LPIPSMetric("vgg", batch_size=8),
        {k: arrays[k] for k in arrays.files},
        json.loads((FIXTURES / "lpips.json").read_text()),
    )


def test_lpips_equals_upstreams_pairs_and_values(lpips_case):
    metric, arrays, record = lpips_case
    real, synth = arrays["real"], arrays["synth"]
    whole = metric.unpaired(real, synth, record["whole"]["n_pairs"], record["whole"]["seed"])
    assert whole["lpips_mean"] == pytest.approx(record["whole"]["mean"], rel=1e-5)
    assert whole["lpips_std"] == pytest.approx(record["whole"]["std"], rel=1e-4)
    small = metric.unpaired(real[:3], synth[:4], record["small"]["n_pairs"], record["small"]["seed"])
    assert small["lpips_pairs"] == 12  # capped at n_real x n_synthetic, as upstream
    assert small["lpips_mean"] == pytest.approx(record["small"]["mean"], rel=1e-5)


def test_per_zbin_lpips_uses_upstreams_seeds_and_minimum(lpips_case):
    metric, arrays, record = lpips_case
    for row in record["per_zbin"]["rows"]:
        b = int(row["zbin"])
        ri, fi = arrays["real_z"] == b, arrays["synth_z"] == b
        out = metric.unpaired(
            arrays["real"][ri], arrays["synth"][fi], record["per_zbin"]["n_pairs"], record["per_zbin"]["seed"] + b, 5
        )
        if np.isnan(row["lpips"]):
            assert np.isnan(out["lpips_mean"]) and "fewer than 5 images" in out["null_reasons"]["lpips_mean"]
        else:
            assert out["lpips_mean"] == pytest.approx(row["lpips"], rel=1e-5), b
            assert out["lpips_std"] == pytest.approx(row["lpips_std"], rel=1e-4), b
