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


@pytest.mark.slow
def test_lpips_equals_upstreams_pairs_and_values(lpips_case):
    metric, arrays, record = lpips_case
    real, synth = arrays["real"], arrays["synth"]
    whole = metric.unpaired(real, synth, record["whole"]["n_pairs"], record["whole"]["seed"])
    assert whole["lpips_mean"] == pytest.approx(record["whole"]["mean"], rel=1e-5)
    assert whole["lpips_std"] == pytest.approx(record["whole"]["std"], rel=1e-4)
    small = metric.unpaired(real[:3], synth[:4], record["small"]["n_pairs"], record["small"]["seed"])
    assert small["lpips_pairs"] == 12  # capped at n_real x n_synthetic, as upstream
    assert small["lpips_mean"] == pytest.approx(record["small"]["mean"], rel=1e-5)


@pytest.mark.slow
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


# ---- tau sweep: upstream's procedure (re-binarise at tau, reseed 42 before each MMD-MF) ----


@pytest.mark.slow
def test_tau_sweep_equals_upstreams_procedure(morphology):
    """Upstream's tau_sensitivity.py is not in the wheel; its fixture applies that driver's steps (evaluation.md
    2.7) to upstream's own MaskMorphologyDistanceComputer. tau = 0 is upstream's MMD-MF of the same masks."""
    from slimdiff.metrics.morphology import TAU_SWEEP, tau_sweep

    arrays, morph = morphology
    record = json.loads((FIXTURES / "tau_sweep.json").read_text())
    assert tuple(r["tau"] for r in record["rows"]) == TAU_SWEEP
    ours = tau_sweep(arrays["real_masks"], arrays["synth_masks"], subsets=100, subset_size=500, seed=record["seed"])
    for row, up in zip(ours.to_dict(orient="records"), record["rows"], strict=True):
        assert row["tau"] == up["tau"]
        assert (row["n_fake_lesions"], row["mmd_mf_subset_size"]) == (up["n_lesions"], up["subset_size"]), row["tau"]
        assert row["mmd_mf_mean"] == pytest.approx(up["mmd_mf_mean"], rel=1e-9), row["tau"]
        assert row["mmd_mf_std"] == pytest.approx(up["mmd_mf_std"], rel=1e-9), row["tau"]
    at_zero = ours[ours["tau"] == 0.0].iloc[0]
    assert at_zero["mmd_mf_mean"] == pytest.approx(morph["mmd_mf_mean"], rel=1e-12)


# ---- KID, FID and the memorisation features: upstream's Inception path (torchmetrics) ----


@pytest.fixture(scope="module")
def inception_case():
    """The fixture's images and upstream's results, at the fixture's torch thread count: the float resize before
    upstream's truncation differs in the last bit between thread counts, and its wrap-around turns such a flip
    at p = 0 / 1 into black / white."""
    import torch

    arrays = np.load(FIXTURES / "inception.npz")
    record = json.loads((FIXTURES / "inception.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(record["torch_threads"])
    yield {k: arrays[k] for k in arrays.files}, record
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def upstream_pixel_features(inception_case, metric_weights):
    """Our Inception features of the fixture's images on upstream's pixel path (the option kid_fid_pixels=upstream)."""
    from slimdiff.metrics.features import InceptionFeatures

    arrays, _ = inception_case
    net = InceptionFeatures(batch_size=10, pixels="upstream")
    return net(arrays["real"].astype(np.float32)), net(arrays["synth"].astype(np.float32))


def test_uint8_times_255_wraps_around_in_this_environment():
    """evaluation.md 1.3's one-line check: what torchmetrics' normalize=True does to upstream's uint8 tensor."""
    import torch

    from slimdiff.metrics.features import to_upstream_inception_uint8

    p = torch.tensor([0, 1, 64, 128, 200, 255], dtype=torch.uint8)
    assert (p * 255).tolist() == [0, 255, 192, 128, 56, 1]
    # images of one grey each, already 299 px (no resize), whose values truncate to p: our explicit wrap agrees
    grey = np.minimum((p.numpy() + 0.5) / 255, 1.0) * 2 - 1
    images = np.broadcast_to(grey[:, None, None], (6, 299, 299)).astype(np.float32)
    wrapped = to_upstream_inception_uint8(images)
    assert wrapped.shape == (6, 3, 299, 299)
    assert wrapped[:, :, 0, 0].tolist() == [[v] * 3 for v in (p * 255).tolist()]


@pytest.mark.slow
def test_upstream_pixel_path_is_bit_exact(inception_case):
    """The uint8 batches our upstream option feeds the network are the ones upstream's KIDComputer and FIDComputer
    feed torchmetrics' network (SHA-256 of what a forward hook saw there): resize, truncation and wrap-around."""
    import hashlib

    from slimdiff.metrics.features import inception_input

    arrays, record = inception_case
    assert record["fid_network_input_equal"]  # upstream's FID sees the same pixels as its KID
    for side in ("real", "synth"):
        x = inception_input(arrays[side].astype(np.float32), "upstream")
        assert list(x.shape) == record["network_input_shape"]
        assert hashlib.sha256(x.numpy().tobytes()).hexdigest() == record["network_input_sha256"][side], side


@pytest.mark.slow
def test_kid_and_fid_with_upstreams_pixels_equal_upstreams(inception_case, upstream_pixel_features):
    """kid_fid_pixels=upstream: upstream's KIDComputer / FIDComputer numbers. 10 + 10 images, so upstream's guard
    picks subsets of 10 = the whole sets and its unseeded torch draws cannot change the value."""
    from slimdiff.metrics.kid_fid import fid, kid

    arrays, record = inception_case
    real, synth = upstream_pixel_features
    np.testing.assert_allclose(real[:, :16], arrays["real_pool3_head"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(synth[:, :16], arrays["synth_pool3_head"], rtol=1e-4, atol=1e-5)
    ours = kid(real, synth, subsets=100, subset_size=1000, seed=42)
    assert ours["kid_subset_size"] == record["kid"]["subset_size"] == 10
    assert ours["kid_mean"] == pytest.approx(record["kid"]["mean"], rel=1e-5)
    assert ours["kid_std"] == pytest.approx(record["kid"]["std"], abs=1e-6)  # 0 up to upstream's float32 sums
    assert fid(real, synth) == pytest.approx(record["fid"], rel=1e-5)


@pytest.mark.slow
def test_default_kid_is_the_fixed_one_not_upstreams(inception_case, upstream_pixel_features):
    """The default pixel path (one rounded uint8 step, no wrap-around) gives a different, standard KID: on these
    images, whose synthetic background holds near-black noise, upstream's path inflates it about 30-fold."""
    from slimdiff.metrics.features import InceptionFeatures
    from slimdiff.metrics.kid_fid import kid

    arrays, record = inception_case
    net = InceptionFeatures(batch_size=10)
    assert net.pixels == "fixed" and net.feature == "2048"
    fixed = kid(net(arrays["real"].astype(np.float32)), net(arrays["synth"].astype(np.float32)), 100, 1000, 42)
    assert fixed["kid_mean"] == pytest.approx(0.01334, abs=2e-4)  # measured when the fixture was made
    assert record["kid"]["mean"] > 20 * fixed["kid_mean"]


@pytest.mark.slow
def test_per_zbin_kid_follows_upstreams_rule(inception_case, upstream_pixel_features):
    """compute_per_zbin_kid: NaN below 10 slices on either side, otherwise KIDComputer (with its guard)."""
    from slimdiff.metrics.kid_fid import kid, zbin_kid

    _, record = inception_case
    real, synth = upstream_pixel_features
    rng = np.random.default_rng(0)
    for row in record["per_zbin"]:
        if np.isnan(row["kid"]):
            out = zbin_kid(rng.normal(size=(row["n_real"], 8)), rng.normal(size=(row["n_synth"], 8)), 50, 250, 42)
            assert np.isnan(out["kid_mean"]) and "fewer than 10 images" in out["null_reasons"]["kid_mean"]
        else:
            assert (row["n_real"], row["n_synth"]) == (len(real), len(synth))
            out = zbin_kid(real, synth, 50, 250, 42)
            assert out["kid_mean"] == pytest.approx(row["kid"], rel=1e-5)
    guard = record["guard"]  # upstream's subset size below subset_size: max(min(n) // 2, 10)
    out = kid(rng.normal(size=(guard["n_real"], 8)), rng.normal(size=(guard["n_synth"], 8)), 2, 1000, 42)
    assert out["kid_subset_size"] == guard["subset_size"]


@pytest.mark.slow
def test_memorization_logits_equal_upstreams_extractor(inception_case, metric_weights):
    """memorization_features=logits: upstream's InceptionFeatureExtractor (feature-NN and memorisation), the
    1008-d unbiased logits its docs call pool3, on its truncated uint8 pixels without the wrap-around."""
    from slimdiff.metrics.features import InceptionFeatures

    arrays, record = inception_case
    net = InceptionFeatures(batch_size=4, pixels="upstream_no_wrap", feature="logits_unbiased")
    ours = net(arrays["real"][:4].astype(np.float32))
    assert ours.shape == (4, record["nn_feature_dim"]) == (4, 1008)
    np.testing.assert_allclose(ours[:, :16], arrays["real_nn_logits_head"][:4], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), arrays["real_nn_logits_norm"][:4], rtol=1e-5)


# ---- Regime B: across folds, mean and population std (upstream's fold_evaluation summary) ----


def test_regime_b_fold_aggregation_is_the_population_std():
    """fold_evaluation.py is not in the wheel: the spec's formula (nan-aware mean, ddof 0 across folds), checked on
    the published camera-ready per-fold values (evaluation.md 6.4), whose summary row the paper prints."""
    import pandas as pd

    from slimdiff.figures.table import across_folds

    published = {  # per-fold values -> the paper's mean +/- std
        "shared MMD-MF": ([11.68, 1.96, 1.48], 5.04, 4.70),
        "decoupled MMD-MF": ([25.99, 1.24, 12.00], 13.08, 10.13),
        "zero-coupling MMD-MF": ([0.48, 0.27, 0.51], 0.42, 0.11),
        "shared KID": ([0.0188, 0.0184, 0.0261], 0.021, 0.004),
    }
    for name, (folds, mean, std) in published.items():
        m, s = across_folds(pd.Series(folds))
        assert (round(m, 2 if "MMD" in name else 3), round(s, 2 if "MMD" in name else 3)) == (mean, std), name
    m, s = across_folds(pd.Series([11.68, 1.96, 1.48]))  # hand-computed: deviations 6.64, -3.08, -3.56
    assert s == pytest.approx(np.sqrt((6.64**2 + 3.08**2 + 3.56**2) / 3), rel=1e-12)
    assert s < np.std([11.68, 1.96, 1.48], ddof=1)  # not the sample std (5.76)
    m, s = across_folds(pd.Series([2.0, np.nan, 4.0]))  # an undefined fold is left out, as upstream's nanmean
    assert (m, s) == (3.0, 1.0)


def test_the_options_reach_the_feature_extractors(tiny_cache, tmp_path, monkeypatch):
    """metrics.kid_fid_pixels and metrics.memorization_features pick the pixel path and layer that
    evaluate_images and evaluate_baseline extract with (stub networks: only the wiring is checked here)."""
    import slimdiff.metrics.features as features_module
    import slimdiff.metrics.lpips_metric as lpips_module
    from slimdiff.config import validate_config
    from slimdiff.generation.outputs import write_samples
    from slimdiff.metrics.evaluate import evaluate_baseline, evaluate_images, real_split

    made = []

    class StubInception:
        def __init__(self, weights=None, device="cpu", batch_size=64, pixels="fixed", feature="2048"):
            made.append((pixels, feature))
            self.pixels, self.feature, self.weights_sha256 = pixels, feature, "stub"

        def cached(self, images, cache_dir, progress=False):
            x = np.asarray(images, np.float64).reshape(len(images), -1)
            return np.stack([x.mean(1), x.std(1), (x > 0).mean(1)], 1)

    class StubLPIPS:
        def __init__(self, net="vgg", device="cpu", batch_size=32):
            pass

        def unpaired(self, real, fake, n_pairs=1000, seed=42, min_images=1):
            return {"lpips_mean": 0.3, "lpips_std": 0.0, "lpips_pairs": 1}

    monkeypatch.setattr(features_module, "InceptionFeatures", StubInception)
    monkeypatch.setattr(lpips_module, "LPIPSMetric", StubLPIPS)
    real = real_split(tiny_cache, 0, "test")
    n = len(real["images"])
    sample = {"images": real["images"], "masks": real["masks"], "z_bin": real["z_bin"], "class": real["class"]}
    sample.update(token=np.zeros(n, int), k=np.zeros(n, int), seed=np.arange(n))
    files = [tmp_path / "samples" / "zbin00.npz"]
    write_samples(files[0], sample, {"run": "x0_lp1.5_sc0.5", "fold": 0, "replica": 0})
    small = {"kid_subsets": 2, "zbin_kid_subsets": 2, "lpips_pairs": 2, "zbin_lpips_pairs": 2, "mmd_subsets": 2}
    for options, expected in (
        ({}, {("fixed", "2048")}),
        (
            {"kid_fid_pixels": "upstream", "memorization_features": "logits"},
            {("upstream", "2048"), ("upstream_no_wrap", "logits_unbiased")},
        ),
    ):
        cfg = validate_config({"metrics": {**small, **options}})["metrics"]
        made.clear()
        evaluate_images(tiny_cache, files, tmp_path / "out", 0, cfg, "x0_lp1.5_sc0.5")
        assert set(made) == expected, options
        made.clear()
        evaluate_baseline(tiny_cache, tmp_path / "baseline.json", 0, cfg)
        assert set(made) == {(cfg["kid_fid_pixels"], "2048")}, options


def test_feature_cache_keys_differ_by_pixel_path_and_layer():
    """One feature cache serves every run: a config switched to upstream's pixels or logits must never read the
    fixed path's features, and the fixed path's keys are the ones caches were written with before the options."""
    import hashlib

    from slimdiff.metrics.features import PIXEL_PATHS, feature_cache_key

    images = np.linspace(-1, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    keys = {
        (pixels, feature): feature_cache_key(images, "w", pixels, feature)
        for pixels in PIXEL_PATHS
        for feature in ("2048", "logits_unbiased")
    }
    assert len(set(keys.values())) == len(keys)
    before = hashlib.sha256(f"{images.dtype}{images.shape}w{PIXEL_PATHS['fixed']}".encode())
    before.update(images.tobytes())
    assert keys["fixed", "2048"] == before.hexdigest()[:32]
