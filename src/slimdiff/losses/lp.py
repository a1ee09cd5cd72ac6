"""Losses of the joint denoiser, each per channel (image, mask) in the space of the prediction target.

Lp:        L_c = mean_{B,H,W}( w_c(x) * |o_c - y_c|^p_c ),  w_c = lesion weight inside the true lesion, else 1
           (a plain mean, as upstream, so lesion weights also rescale the loss)
Kendall:   L = sum_c exp(-s_c) L_c + s_c / 2,  s_c learnable, clamped to [-5, 5]
FFL:       Focal Frequency Loss (Jiang et al. 2021) on the image channel's x0 estimate; spectrum weights are
           detached as in the reference implementation unless `detach_weights` is false (upstream's form).
"""

from __future__ import annotations

import torch
from torch import nn


def lp_per_channel(
    out: torch.Tensor,
    target: torch.Tensor,
    p: tuple[float, float],
    lesion: torch.Tensor | None = None,
    lesion_weights: tuple[float, float] = (1.0, 1.0),
) -> torch.Tensor:
    """(2,) tensor: the Lp loss of the image and of the mask channel. `lesion` is a (B,1,H,W) bool map."""
    losses = []
    for c in range(2):
        err = (out[:, c] - target[:, c]).abs().pow(p[c])
        if lesion is not None and lesion_weights[c] != 1.0:
            err = err * torch.where(lesion[:, 0], lesion_weights[c], 1.0)
        losses.append(err.mean())
    return torch.stack(losses)


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018) homoscedastic weighting of n losses."""

    def __init__(self, n: int, init: float = 0.0):
        super().__init__()
        self.log_vars = nn.Parameter(torch.full((n,), float(init)))

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        s = self.log_vars.clamp(-5.0, 5.0)
        return (torch.exp(-s) * losses + 0.5 * s).sum()


def focal_frequency_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    patch_factor: int = 1,
    log_matrix: bool = False,
    detach_weights: bool = True,
) -> torch.Tensor:
    """FFL between (B,C,H,W) images: mean over frequencies of W * |F(pred) - F(target)|^2."""
    if patch_factor > 1:
        b, c, h, w = pred.shape
        if h % patch_factor or w % patch_factor:
            raise ValueError(f"image size {h}x{w} is not divisible by patch_factor {patch_factor}")

        def patches(x):
            x = x.reshape(b, c, patch_factor, h // patch_factor, patch_factor, w // patch_factor)
            return x.permute(0, 2, 4, 1, 3, 5).reshape(-1, c, h // patch_factor, w // patch_factor)

        pred, target = patches(pred), patches(target)
    diff = torch.fft.fft2(pred.float(), norm="ortho") - torch.fft.fft2(target.float(), norm="ortho")
    dist = diff.real**2 + diff.imag**2
    weight = torch.sqrt(dist + 1e-8) ** alpha
    if log_matrix:
        weight = torch.log1p(weight)
    weight = weight / weight.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
    weight = torch.nan_to_num(weight).clamp(0.0, 1.0)
    if detach_weights:
        weight = weight.detach()
    return (weight * dist).mean()


class DiffusionLoss(nn.Module):
    """Configured loss of one run; returns (total, per-term dict for logging)."""

    def __init__(self, loss_cfg: dict):
        super().__init__()
        self.cfg = loss_cfg
        p = loss_cfg["p"]
        self.p = (p, loss_cfg["mask_p"] if loss_cfg["mask_p"] is not None else p)
        self.lesion_weights = (loss_cfg["lesion_weight_image"], loss_cfg["lesion_weight_mask"])
        self.ffl = loss_cfg["ffl"]
        self.weighting = UncertaintyWeighting(2) if loss_cfg["uncertainty_weighting"] else None

    def forward(self, out, target, x0, x0_hat=None):
        lesion = x0[:, 1:2] > 0
        per_channel = lp_per_channel(out, target, self.p, lesion, self.lesion_weights)
        total = self.weighting(per_channel) if self.weighting is not None else per_channel.sum()
        terms = {"lp_image": per_channel[0].detach(), "lp_mask": per_channel[1].detach()}
        if self.ffl["enabled"]:
            ffl = focal_frequency_loss(
                x0_hat[:, :1].clamp(-1, 1),
                x0[:, :1],
                self.ffl["alpha"],
                self.ffl["patch_factor"],
                self.ffl["log_matrix"],
                self.ffl["detach_weights"],
            )
            total = total + self.ffl["weight"] * ffl
            terms["ffl"] = ffl.detach()
        return total, terms
