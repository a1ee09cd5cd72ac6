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
