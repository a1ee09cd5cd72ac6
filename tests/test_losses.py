import numpy as np
import pytest
import torch

from slimdiff.losses.lp import DiffusionLoss, UncertaintyWeighting, focal_frequency_loss, lp_per_channel


def test_lp_per_channel_by_hand():
    out = torch.tensor([[[[1.0, -2.0]], [[0.5, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.zeros_like(out)
    got = lp_per_channel(out, target, (1.5, 2.0))
    assert got[0].item() == pytest.approx((1.0 + 2.0**1.5) / 2)
    assert got[1].item() == pytest.approx((0.25 + 0.0) / 2)


def test_lesion_weighting_is_a_plain_mean_of_weighted_errors():
    out = torch.tensor([[[[1.0, 1.0]], [[1.0, 1.0]]]])
    lesion = torch.tensor([[[[True, False]]]])
    got = lp_per_channel(out, torch.zeros_like(out), (2.0, 2.0), lesion, (3.0, 1.0))
    assert got[0].item() == pytest.approx((3.0 + 1.0) / 2)
    assert got[1].item() == pytest.approx(1.0)


def test_kendall_weighting():
    w = UncertaintyWeighting(2)
    losses = torch.tensor([2.0, 4.0])
    assert w(losses).item() == pytest.approx(6.0)
    with torch.no_grad():
        w.log_vars.copy_(torch.tensor([1.0, 9.0]))  # second is clamped to 5
    expected = np.exp(-1) * 2 + 0.5 + np.exp(-5) * 4 + 2.5
    assert w(losses).item() == pytest.approx(expected, rel=1e-6)


def numpy_ffl(pred, target, alpha):
    d = np.fft.fft2(pred, norm="ortho") - np.fft.fft2(target, norm="ortho")
    dist = np.abs(d) ** 2
    w = np.sqrt(dist + 1e-8) ** alpha
    w = w / w.max(axis=(-2, -1), keepdims=True)
    return float((w * dist).mean())


def test_ffl_matches_a_numpy_computation():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    got = focal_frequency_loss(pred, target, alpha=1.2).item()
    assert got == pytest.approx(numpy_ffl(pred.numpy(), target.numpy(), 1.2), rel=1e-4)
    assert focal_frequency_loss(pred, pred).item() == pytest.approx(0.0, abs=1e-10)


def test_ffl_detached_weights_change_the_gradient():
    g = torch.Generator().manual_seed(1)
    target = torch.randn(1, 1, 8, 8, generator=g)
    grads = []
    for detach in (True, False):
        pred = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
        focal_frequency_loss(pred, target, alpha=1.0, detach_weights=detach).backward()
        grads.append(pred.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_ffl_patches():
    x, y = torch.randn(1, 1, 8, 8), torch.randn(1, 1, 8, 8)
    assert focal_frequency_loss(x, y, patch_factor=2).item() > 0
    with pytest.raises(ValueError, match="patch_factor"):
        focal_frequency_loss(torch.randn(1, 1, 9, 9), torch.randn(1, 1, 9, 9), patch_factor=2)


def test_diffusion_loss_sums_channels_and_adds_ffl():
    cfg = {
        "p": 2.0,
        "mask_p": None,
        "lesion_weight_image": 1.0,
        "lesion_weight_mask": 1.0,
        "uncertainty_weighting": False,
        "ffl": {
            "enabled": True,
            "weight": 0.5,
            "alpha": 1.0,
            "patch_factor": 1,
            "log_matrix": False,
            "detach_weights": True,
        },
    }
    loss = DiffusionLoss(cfg)
    x0 = torch.zeros(1, 2, 4, 4)
    out = torch.ones(1, 2, 4, 4)
    total, terms = loss(out, x0, x0, x0_hat=out)
    expected = 1.0 + 1.0 + 0.5 * focal_frequency_loss(out[:, :1], x0[:, :1]).item()
    assert total.item() == pytest.approx(expected)
    assert set(terms) == {"lp_image", "lp_mask", "ffl"}
