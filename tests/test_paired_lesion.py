"""MMD-PL (metrics/paired_lesion.py): per-lesion image features given the mask, and their comparison."""

import numpy as np
import pytest
from scipy import ndimage

from slimdiff.metrics.paired_lesion import (
    FEATURES,
    bright_fraction,
    lesion_image_features,
    mmd_pl,
    paired_lesion_metrics,
    wasserstein_per_feature,
)

SIZE = 48
YY, XX = np.mgrid[:SIZE, :SIZE]
BRAIN = (YY - 24) ** 2 + (XX - 24) ** 2 <= 20**2


def pair(centre=(24, 24), radius=4, tissue=-0.2, lesion=0.6, noise=0.0, rng=None):
    """A disc of brain (background -1) with a disc lesion of intensity `lesion` (None: like the tissue);
    the mask is {-1, +1}."""
    m = (YY - centre[0]) ** 2 + (XX - centre[1]) ** 2 <= radius**2
    image = np.where(BRAIN, tissue, -1.0)
    if noise:
        image = image + np.where(BRAIN, noise * rng.standard_normal(image.shape), 0.0)
    if lesion is not None:
        image = np.where(m, lesion, image)
    return image, np.where(m, 1.0, -1.0)


def sample(n, seed, **kw):
    rng = np.random.default_rng(seed)
    pairs = [
        pair((rng.integers(16, 33), rng.integers(16, 33)), int(rng.integers(3, 6)), rng=rng, **kw) for _ in range(n)
    ]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def test_bright_blob_in_a_dark_ring_has_the_expected_features():
    image, mask = pair()
    feats = lesion_image_features(image[None], mask[None])
    assert list(feats.columns) == ["mask_index", *FEATURES] and len(feats) == 1
    row = feats.iloc[0]
    assert row["delta"] == pytest.approx(0.8)  # 0.6 inside, -0.2 on the whole ring
    brain = ndimage.binary_erosion(image > -0.95)
    p = (mask[brain] > 0).mean()  # lesion share of the brain: mu = -0.2 + 0.8p, sigma = 0.8 sqrt(p(1-p))
    assert row["z_in"] == pytest.approx(np.sqrt((1 - p) / p))
    assert row["sigma_norm"] == pytest.approx(0.0)  # flat inside
    assert row["frac_bright"] == 1.0
    assert row["edge_align"] > 1  # the lesion's outline is sharper than the brain on average
    # A lesion as dark as the tissue around it (the brain's contrast lies elsewhere): no contrast, nothing
    # bright, no edge at its outline.
    image, mask = pair(lesion=-0.2)
    image[BRAIN & (YY < 12)] = 0.5
    flat = lesion_image_features(image[None], mask[None]).iloc[0]
    assert flat["delta"] == pytest.approx(0.0) and flat["frac_bright"] == 0.0 and flat["edge_align"] == 0.0


def test_components_thresholds_and_skips():
    image, mask = pair(radius=4)
    mask = mask.copy()
    mask[0:2, 0:2] = 1.0  # 4 px, and outside the brain: below min size
    mask[40:46, 2:8] = 1.0  # 36 px outside the brain: no lesion pixel and no ring in it, skipped
    soft = np.where(mask > 0, 0.3, -0.7)  # a continuous synthetic mask, binarised at tau
    assert len(lesion_image_features(image[None], mask[None])) == 1
    assert len(lesion_image_features(image[None], soft[None], tau=0.0)) == 1
    assert len(lesion_image_features(image[None], soft[None], tau=0.5)) == 0
    blank = np.full_like(image, 0.1)  # no brain contrast at all: sigma_B = 0, slice skipped
    assert len(lesion_image_features(np.stack([blank, image]), np.stack([mask, mask]))) == 1
    assert lesion_image_features(np.stack([blank, image]), np.stack([mask, mask]))["mask_index"].tolist() == [1]
    with pytest.raises(ValueError, match="pairs"):
        lesion_image_features(image[None], np.stack([mask, mask]))


def test_identical_sets_score_zero_and_a_shifted_set_does_not():
    real = lesion_image_features(*sample(40, 0, noise=0.1))
    same = mmd_pl(real, real.copy(), subsets=10)
    assert same["mmd_pl_subset_size"] == 40 and same["n_real_lesions"] == same["n_fake_lesions"] == 40
    # X = Y: the unbiased estimator is (2/n) (mean off-diagonal k - mean diagonal k), O(1/n) of the kernel's
    # scale, and every subset is the whole set (no spread).
    z = (real[FEATURES] - real[FEATURES].mean()) / real[FEATURES].std(ddof=0).where(lambda sd: sd >= 1e-8, 1.0)
    k = (z.to_numpy() @ z.to_numpy().T / len(FEATURES) + 1) ** 3
    n = len(k)
    exact = 2 / n * ((k.sum() - np.trace(k)) / (n * (n - 1)) - np.trace(k) / n)
    assert same["mmd_pl_mean"] == pytest.approx(exact, rel=1e-9) and abs(exact) < 0.05 * np.trace(k) / n
    assert same["mmd_pl_std"] == pytest.approx(0.0, abs=1e-12)
    assert all(w == 0.0 for w in wasserstein_per_feature(real, real).values())
    twin = lesion_image_features(*sample(40, 1, noise=0.1))  # same generator, other draws
    dull = lesion_image_features(*sample(40, 1, noise=0.1, lesion=0.0))  # lesions barely brighter than tissue
    near, far = mmd_pl(real, twin, subsets=10)["mmd_pl_mean"], mmd_pl(real, dull, subsets=10)["mmd_pl_mean"]
    assert abs(near) < 0.5 and far > 100


def test_lesions_no_brighter_than_their_ring_lower_the_bright_fraction():
    real = lesion_image_features(*sample(30, 0, noise=0.1))
    fake = lesion_image_features(*sample(30, 1, noise=0.1, lesion=None))
    b = bright_fraction(real, fake)
    assert b["frac_bright_real"] == pytest.approx(1.0)
    # Lesion pixels drawn like their tissue: the Gaussian share above mu + sigma, about 0.16.
    assert b["frac_bright_synth"] == pytest.approx(0.16, abs=0.05)
    assert b["frac_bright_gap"] == pytest.approx(b["frac_bright_synth"] - 1.0)
    w = wasserstein_per_feature(real, fake)  # on raw values: lesion 0.6 vs tissue -0.2 is a 0.8 contrast gap
    assert w["delta"] == pytest.approx(0.8, abs=0.05)


def test_too_few_lesions_give_nan_with_a_reason():
    real = lesion_image_features(*sample(5, 0))
    one = lesion_image_features(*sample(1, 1))
    out = paired_lesion_metrics(real, one)
    assert np.isnan(out["mmd_pl_mean"]) and "fewer than 2 lesions" in out["null_reasons"]["mmd_pl_mean"]
    assert np.isnan(out["wasserstein"]["delta"]) and out["frac_bright_synth"] == pytest.approx(1.0)
    assert set(out["features"]["real"]["z_in"]) == {"mean", "std", "median", "p5", "p95"}


def test_a_shared_generator_makes_the_value_depend_on_call_order():
    real = lesion_image_features(*sample(30, 0, noise=0.1))
    fake = lesion_image_features(*sample(30, 1, noise=0.1))
    kw = {"subsets": 5, "subset_size": 10}
    assert mmd_pl(real, fake, **kw) == mmd_pl(real, fake, **kw)  # seeded per call (42)
    rng = np.random.default_rng(42)
    first, second = mmd_pl(real, fake, rng=rng, **kw), mmd_pl(real, fake, rng=rng, **kw)
    assert first["mmd_pl_mean"] != second["mmd_pl_mean"]
    again = np.random.default_rng(42)
    assert mmd_pl(real, fake, rng=again, **kw) == first
