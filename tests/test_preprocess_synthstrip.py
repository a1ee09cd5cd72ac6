"""The synthstrip backend: geometry and thresholds with known answers, the weights' sha256, the missing package,
and the real loading code on weights saved from a randomly initialised model of nipreps-synthstrip's
architecture (FreeSurfer's synthstrip.1.pt is not redistributable, so it is not used here)."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from slimdiff.errors import SlimdiffInputError
from slimdiff.preprocess import brain
from slimdiff.preprocess import synthstrip as strip
from slimdiff.preprocess.errors import BackendMissingError, WeightsError


def _sphere(shape=(40, 44, 36), radius=12.0, spacing=(1.5, 1.2, 1.8)):
    """(image, brain, affine): a bright ellipsoid 'brain' (radius in mm) in a dark field on an anisotropic grid."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-20.0, 30.0, 5.0]
    centre = (np.array(shape) - 1) / 2
    mm = (np.indices(shape, dtype=np.float32) - centre[:, None, None, None]) * np.array(spacing)[:, None, None, None]
    inside = np.sqrt((mm**2).sum(0)) < radius
    return np.where(inside, 500.0, 10.0).astype(np.float32), inside, affine


def _dice(a, b):
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def test_the_network_grid_is_1mm_lia_in_multiples_of_64_and_resampling_round_trips():
    image, inside, affine = _sphere()
    shape, grid = strip.network_grid(image.shape, affine, min_size=64)
    assert all(s % 64 == 0 and s >= 64 for s in shape)
    assert nib.aff2axcodes(grid) == ("L", "I", "A") and np.allclose(np.abs(grid[:3, :3]).sum(0), 1.0)
    centre_in = affine[:3, :3] @ ((np.array(image.shape) - 1) / 2) + affine[:3, 3]
    centre_grid = grid[:3, :3] @ ((np.array(shape) - 1) / 2) + grid[:3, 3]
    np.testing.assert_allclose(centre_grid, centre_in, atol=1e-6)
    assert strip.network_grid((300, 300, 300), np.eye(4))[0] == (320, 320, 320), "capped like FreeSurfer"
    on_grid = strip.resample(inside, affine, shape, grid) > 0.5
    assert abs(on_grid.sum() - inside.sum() * np.prod(np.diag(affine)[:3])) < 0.05 * on_grid.sum(), "volume in mm^3"
    back = strip.resample(on_grid, grid, image.shape, affine) > 0.5
    assert _dice(back, inside) > 0.95


def test_the_mask_is_the_largest_part_below_the_border_with_holes_filled():
    _, inside, _ = _sphere(spacing=(1.0, 1.0, 1.0))
    distance = np.where(inside, -5.0, 5.0)
    distance[20, 22, 18] = 5.0  # a hole in the brain
    distance[1:3, 1:3, 1:3] = -5.0  # a speck outside
    mask = strip.mask_from_distance(distance, border_mm=1.0)
    np.testing.assert_array_equal(mask, inside)
    assert not strip.mask_from_distance(np.full((4, 4, 4), 9.0)).any(), "nothing below the border: empty"


def test_the_whole_chain_finds_a_known_brain_with_a_stand_in_network(monkeypatch, tmp_path):
    """The network replaced by one whose 'distance' is negative where the input is bright: the mask must be the
    bright ellipsoid on the image's own grid (geometry, scaling and threshold together)."""
    torch = pytest.importorskip("torch")
    image, inside, affine = _sphere()

    class Bright(torch.nn.Module):
        def forward(self, x):
            return 10.0 * (0.5 - x)  # inputs are scaled to [0, 1]: the ellipsoid is 1, the field ~0

    monkeypatch.setattr(strip, "require_package", lambda: None)
    monkeypatch.setattr(strip, "load_model", lambda path, device="cpu": Bright())
    monkeypatch.setattr(strip, "package_version", lambda: "stand-in")
    weights = tmp_path / "synthstrip.1.pt"
    weights.write_bytes(b"stand-in weights")
    mask, info = strip.brain_mask(image, affine, weights, hashlib.sha256(b"stand-in weights").hexdigest(), min_size=64)
    assert mask.shape == image.shape and _dice(mask, inside) > 0.95
    assert info["weights_sha256"] == {"synthstrip.1.pt": hashlib.sha256(b"stand-in weights").hexdigest()}


def test_weights_with_a_wrong_or_missing_sha256_are_refused(tmp_path):
    path = tmp_path / "synthstrip.1.pt"
    path.write_bytes(b"model")
    good = hashlib.sha256(b"model").hexdigest()
    assert strip.verify_weights(path, good) == good
    assert strip.verify_weights(path, good.upper()) == good
    with pytest.raises(WeightsError, match=r"synthstrip\.1\.pt: sha256 .* is not the configured") as err:
        strip.verify_weights(path, "0" * 64)
    assert "\n" not in str(err.value)
    with pytest.raises(WeightsError, match=f"sha256 is not set.*{good}"):
        strip.verify_weights(path, None)
    with pytest.raises(WeightsError, match="not found"):
        strip.verify_weights(tmp_path / "absent.pt", good)
    with pytest.raises(WeightsError, match="weights is not set"):
        strip.verify_weights(None, good)


def test_a_missing_package_is_a_one_line_error(monkeypatch):
    def absent(name):
        raise ModuleNotFoundError(f"No module named {name.split('.')[0]!r}")

    monkeypatch.setattr(strip.importlib.util, "find_spec", absent)
    with pytest.raises(BackendMissingError, match=r"pip install nipreps-synthstrip==0\.0\.1") as err:
        strip.require_package()
    assert isinstance(err.value, SlimdiffInputError) and "\n" not in str(err.value)
    monkeypatch.setattr(strip.importlib.util, "find_spec", lambda name: None)
    image, _, affine = _sphere()
    with pytest.raises(BackendMissingError):  # through the backend switch, before the weights are looked at
        brain.extract("synthstrip", nib.Nifti1Image(image, affine), "x.nii.gz", synthstrip={"weights": None})


def test_config_takes_the_backend_and_pins_the_sha256():
    from slimdiff.config import ConfigError, validate_config
    from slimdiff.rerun import rule_settings

    cfg = {
        "brain_extraction": {
            "backend": "synthstrip",
            "synthstrip": {"weights": "a/synthstrip.1.pt", "sha256": "ab" * 32},
        }
    }
    section = validate_config({"preprocess": cfg})["preprocess"]
    assert section["brain_extraction"]["synthstrip"]["border_mm"] == 1.0
    params = rule_settings("preprocess", "preprocess", section)["brain_extraction"]["synthstrip"]
    assert "weights" not in params and params["sha256"] == "ab" * 32, "the file's content reruns, not its path"
    with pytest.raises(ConfigError):
        validate_config({"preprocess": {"brain_extraction": {"synthstrip": {"sha256": "not-hex"}}}})


def test_random_weights_of_the_real_architecture_load_and_run(tmp_path):
    """The real loading code: a randomly initialised StripModel saved as FreeSurfer saves its checkpoint."""
    pytest.importorskip("nipreps.synthstrip")
    import torch
    from nipreps.synthstrip.model import StripModel

    torch.manual_seed(0)
    path = tmp_path / "synthstrip.1.pt"
    torch.save({"model_state_dict": StripModel().state_dict()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    model = strip.load_model(path)
    assert not model.training and sum(p.numel() for p in model.parameters()) > 1e5
    image, _, affine = _sphere()
    mask, info = strip.brain_mask(image, affine, path, digest, min_size=64)
    assert mask.shape == image.shape and mask.dtype == bool
    assert info["weights_sha256"] == {"synthstrip.1.pt": digest}
    assert info["network_grid"] == [64, 128, 64], "LIA: x 60 mm, z 36 x 1.8 = 64.8 mm > 64, y 52.8 mm"

    other = tmp_path / "other.pt"
    torch.save({"model_state_dict": torch.nn.Linear(3, 2).state_dict()}, other)
    with pytest.raises(WeightsError, match="do not fit SynthStrip's architecture") as err:
        strip.load_model(other)
    assert "\n" not in str(err.value)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read as a PyTorch checkpoint"):
        strip.load_model(junk)
