"""Noise schedule and the three parameterisations, in one screen.

Forward process:   x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,   t in {0..T-1}
Targets:           epsilon -> eps;   x0 -> x0;   v -> sqrt(abar_t) eps - sqrt(1 - abar_t) x0
x0 from output o:  epsilon -> (x_t - sqrt(1-abar) o) / sqrt(abar);   x0 -> o;   v -> sqrt(abar) x_t - sqrt(1-abar) o

The cosine schedule is MONAI's (>= 1.5 semantics: betas clipped at 0.999 and abar recomputed from them, so
abar_0 = 0.99996 < 1 and the last DDIM step is finite).
"""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDPMScheduler
from torch import nn

PREDICTIONS = ("epsilon", "v", "x0")


def cosine_alphas_cumprod(timesteps: int = 1000) -> torch.Tensor:
    return DDPMScheduler(num_train_timesteps=timesteps, schedule="cosine").alphas_cumprod.double()


class Diffusion(nn.Module):
    def __init__(self, timesteps: int = 1000, prediction: str = "x0", clip: bool = True):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.timesteps, self.prediction, self.clip = timesteps, prediction, clip
        self.register_buffer("alphas_cumprod", cosine_alphas_cumprod(timesteps).float(), persistent=False)

    def _coef(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        abar = self.alphas_cumprod.to(like.device)[t].to(like.dtype).view(-1, *([1] * (like.ndim - 1)))
        return abar.sqrt(), (1 - abar).sqrt()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        a, s = self._coef(t, x0)
        return a * x0 + s * eps

    def target(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        if self.prediction == "epsilon":
            return eps
        if self.prediction == "x0":
            return x0
        a, s = self._coef(t, x0)
        return a * eps - s * x0

    def x0_from_output(self, out: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.prediction == "x0":
            return out
        a, s = self._coef(t, x_t)
        if self.prediction == "epsilon":
            return (x_t - s * out) / a
        return a * x_t - s * out

    def rescaled_input(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t / sqrt(alpha_bar_t): the x0 estimate of a network that answers eps = 0, i.e. copies its input."""
        a, _ = self._coef(t, x_t)
        return x_t / a

    def eps_from_x0(self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a, s = self._coef(t, x_t)
        return (x_t - a * x0) / s
