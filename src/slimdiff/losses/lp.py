"""Losses of the joint denoiser, each per channel (image, mask) in the space of the prediction target.

Lp:        L_c = mean_{B,H,W}( w_c(x) * |o_c - y_c|^p_c ),  w_c = lesion weight inside the true lesion, else 1
           (a plain mean, as upstream, so lesion weights also rescale the loss)
Kendall:   L = sum_g exp(-s_g) G_g + s_g / 2,  s_g learnable, clamped to [-5, 5]. Without FFL the terms G_g
           are the two channels (G = L_image, L_mask; s initialised to 0). With FFL they are upstream's two
           groups, G_0 = L_image + L_mask and G_1 = weight * FFL (s initialised to [0.0, 0.5]), so the
           frequency term gets its own learned scale instead of being added unweighted.
FFL:       Focal Frequency Loss (Jiang et al. 2021) on the image channel's x0 estimate:
           mean over frequencies of W * |D|^2, D = F(pred) - F(target) (orthonormal 2D FFT, per patch), with
             reference form (Jiang et al.):  W = |D|^alpha, optionally log(1 + W), then W / max(W)
             upstream form (SLIM-Diff):      W = |D|, optionally log(1 + W), then (W / max(W))^alpha
           max over the frequency plane of each (patch, channel). Without log the two forms are equal (a power
           commutes with dividing by the max); with log_matrix and alpha != 1 they differ. Weights are
           detached as in the reference implementation unless `detach_weights` is false (upstream does not
           detach); exact upstream reproduction is form "upstream" with detach_weights false.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimdiff.config import ConfigError

FFL_FORMS = ("reference", "upstream")
# Upstream's initial log-variances of the (L_image + L_mask, FFL) groups.
FFL_GROUP_INIT = (0.0, 0.5)


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
    """Kendall et al. (2018) homoscedastic weighting of n losses (or of n groups of losses, summed beforehand).

    The log-variances are ordinary parameters: the optimiser of the denoiser trains them (with its weight decay).
    """

    def __init__(self, n: int, init: float | Sequence[float] = 0.0):
        super().__init__()
        init = [float(init)] * n if isinstance(init, int | float) else [float(s) for s in init]
        if len(init) != n:
            raise ConfigError(f"{len(init)} initial log-variances for {n} losses")
        self.log_vars = nn.Parameter(torch.tensor(init))

    def effective_log_vars(self) -> torch.Tensor:
        """The log-variances in use: the parameters clamped to [-5, 5]."""
        return self.log_vars.clamp(-5.0, 5.0)

    def forward(self, losses: torch.Tensor) -> torch.Tensor:
        s = self.effective_log_vars()
        return (torch.exp(-s) * losses + 0.5 * s).sum()


def focal_frequency_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    alpha: float = 1.0,
    patch_factor: int = 1,
    log_matrix: bool = False,
    detach_weights: bool = True,
    form: str = "reference",
) -> torch.Tensor:
    """FFL between (B,C,H,W) images: mean over frequencies of W * |F(pred) - F(target)|^2 (see module doc)."""
    if form not in FFL_FORMS:
        raise ValueError(f"FFL form {form!r}: expected one of {FFL_FORMS}")
    if patch_factor > 1:
        b, c, h, w = pred.shape
        if h % patch_factor or w % patch_factor:
            raise ConfigError(f"image size {h}x{w} is not divisible by patch_factor {patch_factor}")

        def patches(x):
            x = x.reshape(b, c, patch_factor, h // patch_factor, patch_factor, w // patch_factor)
            return x.permute(0, 2, 4, 1, 3, 5).reshape(-1, c, h // patch_factor, w // patch_factor)

        pred, target = patches(pred), patches(target)
    diff = torch.fft.fft2(pred.float(), norm="ortho") - torch.fft.fft2(target.float(), norm="ortho")
    dist = diff.real**2 + diff.imag**2
    magnitude = torch.sqrt(dist + 1e-8)
    if form == "reference":
        weight = magnitude**alpha
        if log_matrix:
            weight = torch.log1p(weight)
        weight = _normalise_by_max(weight)
    else:
        weight = torch.log1p(magnitude) if log_matrix else magnitude
        weight = _normalise_by_max(weight) ** alpha
    if detach_weights:
        weight = weight.detach()
    return (weight * dist).mean()


def _normalise_by_max(weight: torch.Tensor) -> torch.Tensor:
    """Divide by the maximum over the frequency plane of each (patch, channel), into [0, 1]."""
    weight = weight / weight.amax(dim=(-2, -1), keepdim=True).clamp(min=1e-12)
    return torch.nan_to_num(weight).clamp(0.0, 1.0)


class DiffusionLoss(nn.Module):
    """Configured loss of one run; returns (total, per-term dict for logging)."""

    def __init__(self, loss_cfg: dict):
        super().__init__()
        self.cfg = loss_cfg
        p = loss_cfg["p"]
        self.p = (p, loss_cfg["mask_p"] if loss_cfg["mask_p"] is not None else p)
        self.lesion_weights = (loss_cfg["lesion_weight_image"], loss_cfg["lesion_weight_mask"])
        self.ffl = loss_cfg["ffl"]
        self.weighting = None
        # Names of the Kendall terms, for logging their log-variances (train/log_var_<name>, log.csv).
        self.log_var_names: tuple[str, ...] = ()
        if loss_cfg["uncertainty_weighting"]:
            grouped = self.ffl["enabled"]
            init = loss_cfg["uncertainty_log_var_init"]
            if init is None:
                init = FFL_GROUP_INIT if grouped else (0.0, 0.0)
            self.weighting = UncertaintyWeighting(2, init)
            self.log_var_names = ("image_mask", "ffl") if grouped else ("image", "mask")

    def log_vars(self) -> dict[str, torch.Tensor]:
        """The log-variances in use (0-dim, detached), by term name; empty without Kendall weighting."""
        if self.weighting is None:
            return {}
        return dict(zip(self.log_var_names, self.weighting.effective_log_vars().detach(), strict=True))

    def forward(self, out, target, x0, x0_hat=None):
        lesion = x0[:, 1:2] > 0
        per_channel = lp_per_channel(out, target, self.p, lesion, self.lesion_weights)
        terms = {"lp_image": per_channel[0].detach(), "lp_mask": per_channel[1].detach()}
        if not self.ffl["enabled"]:
            total = self.weighting(per_channel) if self.weighting is not None else per_channel.sum()
            return total, terms
        ffl = focal_frequency_loss(
            x0_hat[:, :1].clamp(-1, 1),
            x0[:, :1],
            self.ffl["alpha"],
            self.ffl["patch_factor"],
            self.ffl["log_matrix"],
            self.ffl["detach_weights"],
            self.ffl["form"],
        )
        terms["ffl"] = ffl.detach()
        groups = torch.stack([per_channel.sum(), self.ffl["weight"] * ffl])
        total = self.weighting(groups) if self.weighting is not None else groups.sum()
        return total, terms
