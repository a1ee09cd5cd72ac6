import numpy as np
import pytest
import torch
from conftest import tiny_run_config
from test_model import PAPER, TINY, _perturb_zero_init

from slimdiff.data.cache import load_cache
from slimdiff.model.factory import build_denoiser, count_parameters
from slimdiff.model.file import load_denoiser, read_model_file
from slimdiff.model.priors import PriorEncoder, compute_zbin_priors
from slimdiff.training.runner import fold_priors, train_run


def disc(size=32, r=10, centre=(16, 16)):
    yy, xx = np.mgrid[:size, :size]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 < r**2).astype(float)


def test_prior_of_a_disc_is_the_dilated_disc():
    g = np.random.default_rng(0)
    images = np.stack([disc() * (0.8 + 0.05 * g.standard_normal((32, 32))) - 1 for _ in range(6)])
    prior = compute_zbin_priors(images, np.array([0, 0, 0, 1, 1, 1]), n_bins=3)
    assert prior.shape == (3, 32, 32) and not prior[2].any()  # an empty bin gives an all-false prior
    inside = disc(r=8) > 0
    outside = disc(r=13) == 0
    assert prior[0][inside].all() and not prior[0][outside].any()


def test_priors_come_from_training_slices_only(tiny_cache):
    cache = load_cache(tiny_cache)
    ref = fold_priors(cache, 0)
    from slimdiff.data.splits import fold_membership

    member = fold_membership(cache.index, 0).to_numpy()
    altered = np.array(cache.images)
    altered[member != "train"] = 1.0  # val and test slices: all "brain"
    cache.images = altered
    assert np.array_equal(fold_priors(cache, 0), ref)
    altered[member == "train"] = 1.0
    assert not np.array_equal(fold_priors(cache, 0), ref)


def test_cross_attention_sizes_match_upstream():
    assert count_parameters(PriorEncoder(256)) == 126_144  # upstream's legacy prior encoder
    net = build_denoiser(dict(PAPER, anatomical_prior="cross_attention"), True, 30, (34, 115), (160, 160))
    assert count_parameters(net) - count_parameters(net.prior_encoder) == 39_912_578


@pytest.mark.parametrize("mode", ["concat", "cross_attention"])
def test_prior_reaches_the_output(mode):
    net = build_denoiser(dict(TINY, anatomical_prior=mode, prior_context_dim=16), False, 4, (0, 7), (32, 32)).eval()
    _perturb_zero_init(net)
    x, t, tok = torch.randn(2, 2, 32, 32), torch.tensor([10, 500]), torch.tensor([1, 6])
    net.set_priors(np.zeros((4, 32, 32), bool))
    a = net(x, t, tok)
    net.set_priors(np.stack([disc()] * 4) > 0)
    assert a.shape == (2, 2, 32, 32) and not torch.allclose(a, net(x, t, tok))


def test_a_dropped_token_keeps_the_prior_of_its_z_bin():
    """Classifier-free guidance: the null condition replaces the embedding, never the slice's anatomical prior."""
    net = build_denoiser(dict(TINY, anatomical_prior="concat", cfg_null_token=True), False, 4, (0, 7), (32, 32))
    net.set_priors(np.stack([disc(r=4 + 2 * b) for b in range(4)]) > 0)
    seen = []
    net.unet.conv_in.register_forward_hook(lambda mod, args, out: seen.append(args[0][:, -1].clone()))
    x, t = torch.randn(2, 2, 32, 32), torch.tensor([10, 500])
    tokens = torch.tensor([1, 6])  # z-bins 1 and 2
    net(x, t, tokens)
    net(x, t, tokens + 2 * 4)  # the same slices with their condition dropped
    assert torch.equal(seen[0], seen[1]) and torch.equal(seen[0][1], net.priors[2])


def test_twin_variant_refuses_priors():
    with pytest.raises(ValueError, match="anatomical_prior"):
        build_denoiser(dict(TINY, variant="zero_coupling", anatomical_prior="concat"), False, 4, (0, 7))


@pytest.mark.slow
def test_trained_model_carries_its_priors(tiny_cache, tmp_path):
    cfg = tiny_run_config(max_epochs=1)
    cfg["model"]["anatomical_prior"] = "concat"
    train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu")
    stored = read_model_file(tmp_path / "model.pt")["state_dict"]["priors"]
    expected = torch.as_tensor(fold_priors(load_cache(tiny_cache), 0), dtype=torch.float32) * 2 - 1
    assert torch.equal(stored, expected)
    net, _, _ = load_denoiser(tmp_path / "model.pt")
    assert torch.equal(net.priors, expected)
