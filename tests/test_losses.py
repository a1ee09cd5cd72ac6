import math

import numpy as np
import pytest
import torch

from slimdiff.config import validate_config
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


def loss_cfg(**loss) -> dict:
    """The loss section with the schema's defaults, as a run gets it."""
    return validate_config({"loss": loss})["loss"]


def test_diffusion_loss_sums_channels_and_adds_ffl():
    cfg = loss_cfg(p=2.0, ffl={"enabled": True, "weight": 0.5})
    loss = DiffusionLoss(cfg)
    x0 = torch.zeros(1, 2, 4, 4)
    out = torch.ones(1, 2, 4, 4)
    total, terms = loss(out, x0, x0, x0_hat=out)
    expected = 1.0 + 1.0 + 0.5 * focal_frequency_loss(out[:, :1], x0[:, :1]).item()
    assert total.item() == pytest.approx(expected)
    assert set(terms) == {"lp_image", "lp_mask", "ffl"}
    assert loss.log_vars() == {}


# pred [3, 1] against 0 on a 1x2 image: D = [4, 2] / sqrt(2), |D| = [2 sqrt(2), sqrt(2)], |D|^2 = [8, 2].
# With alpha 2 and log_matrix:
#   reference: W = log(1 + |D|^2) / max = [log 9, log 3] / log 9 = [1, 1/2]  ->  FFL = (8 * 1 + 2 / 2) / 2
#   upstream:  W = (log(1 + |D|) / max)^2 = [1, r^2], r = log(1 + sqrt 2) / log(1 + 2 sqrt 2)
HAND_PRED = torch.tensor([[[[3.0, 1.0]]]])
HAND_REFERENCE = (8.0 + 2.0 * 0.5) / 2
HAND_UPSTREAM = (8.0 + 2.0 * (math.log(1 + math.sqrt(2)) / math.log(1 + 2 * math.sqrt(2))) ** 2) / 2


@pytest.mark.parametrize("form, expected", [("reference", HAND_REFERENCE), ("upstream", HAND_UPSTREAM)])
def test_ffl_forms_by_hand(form, expected):
    got = focal_frequency_loss(HAND_PRED, torch.zeros_like(HAND_PRED), alpha=2.0, log_matrix=True, form=form)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ffl_forms_agree_without_log_and_differ_with_it():
    target = torch.zeros_like(HAND_PRED)
    plain = [focal_frequency_loss(HAND_PRED, target, alpha=2.0, form=f).item() for f in ("reference", "upstream")]
    assert plain == pytest.approx([(8.0 + 2.0 * 0.25) / 2] * 2, rel=1e-6)  # W = [1, 1/4] either way
    assert HAND_UPSTREAM == pytest.approx(4.431, abs=1e-3) and HAND_UPSTREAM != pytest.approx(HAND_REFERENCE)


def numpy_upstream_ffl(pred, target, alpha, patch_factor):
    """Upstream's order with explicit patch slicing: |D| -> log(1 + .) -> / max per (patch, channel) -> ^alpha."""
    b, c, h, w = pred.shape
    ph, pw = h // patch_factor, w // patch_factor
    total, count = 0.0, 0
    for i in range(patch_factor):
        for j in range(patch_factor):
            sl = (slice(None), slice(None), slice(i * ph, (i + 1) * ph), slice(j * pw, (j + 1) * pw))
            d = np.fft.fft2(pred[sl], norm="ortho") - np.fft.fft2(target[sl], norm="ortho")
            dist = np.abs(d) ** 2
            wgt = np.log1p(np.sqrt(dist + 1e-8))
            wgt = (wgt / wgt.max(axis=(-2, -1), keepdims=True)) ** alpha
            total, count = total + (wgt * dist).sum(), count + dist.size
    return total / count


def test_ffl_upstream_form_matches_numpy_with_patches():
    g = torch.Generator().manual_seed(3)
    pred, target = torch.randn(2, 1, 8, 8, generator=g), torch.randn(2, 1, 8, 8, generator=g)
    got = focal_frequency_loss(pred, target, 1.35, patch_factor=2, log_matrix=True, form="upstream").item()
    assert got == pytest.approx(numpy_upstream_ffl(pred.numpy(), target.numpy(), 1.35, 2), rel=1e-4)
    with pytest.raises(ValueError, match="form"):
        focal_frequency_loss(pred, target, form="jiang")


def test_ffl_upstream_form_passes_the_gradient_through_its_weights_unless_detached():
    target = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    grads = []
    for detach in (True, False):
        pred = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(5), requires_grad=True)
        focal_frequency_loss(pred, target, 1.2, log_matrix=True, detach_weights=detach, form="upstream").backward()
        grads.append(pred.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_kendall_groups_with_ffl_follow_the_formula():
    cfg = loss_cfg(p=2.0, uncertainty_weighting=True, ffl={"enabled": True, "weight": 0.5, "alpha": 1.5})
    loss = DiffusionLoss(cfg)
    assert loss.weighting.log_vars.tolist() == [0.0, 0.5]  # upstream's initial log-variances
    x0 = torch.zeros(1, 2, 4, 4)
    out = torch.full((1, 2, 4, 4), 0.5)
    out[:, 0, 0, 0] = -0.25  # an image error with some structure, so the FFL is not trivial
    total, terms = loss(out, x0, x0, x0_hat=out)
    lp_image, lp_mask = (15 * 0.25 + 0.0625) / 16, 0.25
    ffl = focal_frequency_loss(out[:, :1], x0[:, :1], alpha=1.5).item()
    assert terms["lp_image"].item() == pytest.approx(lp_image) and terms["ffl"].item() == pytest.approx(ffl)
    group_image_mask, group_ffl = lp_image + lp_mask, 0.5 * ffl
    expected = group_image_mask + 0.0 + math.exp(-0.5) * group_ffl + 0.25
    assert total.item() == pytest.approx(expected, rel=1e-6)
    total.backward()  # dL/ds_g = -exp(-s_g) G_g + 1/2
    grad = loss.weighting.log_vars.grad.tolist()
    assert grad == pytest.approx([-group_image_mask + 0.5, -math.exp(-0.5) * group_ffl + 0.5], rel=1e-5)
    assert set(loss.log_vars()) == {"image_mask", "ffl"}
    assert loss.log_vars()["ffl"].item() == pytest.approx(0.5)


def test_kendall_per_channel_without_ffl_and_a_configured_start():
    loss = DiffusionLoss(loss_cfg(p=2.0, uncertainty_weighting=True))
    assert loss.weighting.log_vars.tolist() == [0.0, 0.0] and loss.log_var_names == ("image", "mask")
    x0, out = torch.zeros(1, 2, 2, 2), torch.ones(1, 2, 2, 2)
    total, _ = loss(out, x0, x0)
    assert total.item() == pytest.approx(2.0)  # exp(0) * 1 per channel, s = 0
    started = DiffusionLoss(loss_cfg(p=2.0, uncertainty_weighting=True, uncertainty_log_var_init=[1.0, -7.0]))
    total, _ = started(out, x0, x0)
    assert total.item() == pytest.approx(math.exp(-1) + 0.5 + math.exp(5) - 2.5, rel=1e-6)  # -7 clamped to -5
    assert started.log_vars()["mask"].item() == -5.0
