"""DDIM sampling with eta, x0 clipping, self-conditioning feedback and a choice of timestep spacing.

Per step t -> t_prev (abar_prev = 1 after the last step):
    o        = net(x_t, t, token, x0_sc)
    x0_hat   = x0(o);  eps_hat = eps(x0_hat) from the UNCLIPPED x0_hat;  x0_hat <- clamp(x0_hat, -1, 1)
    sigma    = eta * sqrt((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev))
    x_prev   = sqrt(abar_prev) x0_hat + sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z
    x0_sc    = x0_hat (fed back at the next step when self-conditioning is on)

The noise z comes from `noise(step, shape)`, so a caller can give every sample its own generator and get the
same sample whatever the batch it lands in.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from slimdiff.config import ConfigError
from slimdiff.diffusion.schedule import Diffusion

NoiseFn = Callable[[int, tuple[int, ...]], torch.Tensor]


def ddim_timesteps(steps: int, timesteps: int = 1000, spacing: str = "leading") -> list[int]:
    """Descending timesteps. leading: {0, k, .., (steps-1)k}, k = T // steps (upstream; 300 steps start at 897).
    trailing: round(T, T - T/steps, ..) - 1 (starts at T - 1)."""
    if not 1 <= steps <= timesteps:
        raise ConfigError(f"DDIM steps must be in [1, {timesteps}], got {steps}")
    if spacing == "leading":
        k = timesteps // steps
        grid = np.arange(steps) * k
    elif spacing == "trailing":
        # Exactly `steps` points: a float-step np.arange(T, 0, -T/steps) can yield one more (ending at -1).
        grid = np.round(timesteps - np.arange(steps) * (timesteps / steps)).astype(int)[::-1] - 1
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}: expected leading or trailing")
    return [int(t) for t in grid[::-1]]


@torch.no_grad()
def ddim_sample(
    net: Callable[..., torch.Tensor],
    diffusion: Diffusion,
    x_T: torch.Tensor,
    tokens: torch.Tensor,
    steps: int,
    eta: float = 0.0,
    spacing: str = "leading",
    self_condition: bool = False,
    noise: NoiseFn | None = None,
    progress: Callable | None = None,
) -> torch.Tensor:
    """Run DDIM from x_T; returns x0 samples (clipped to [-1, 1] when diffusion.clip)."""
    abar = diffusion.alphas_cumprod.to(x_T.device).double()
    grid = ddim_timesteps(steps, diffusion.timesteps, spacing)
    x = x_T
    x0_sc = torch.zeros_like(x_T) if self_condition else None
    batch = x_T.shape[0]
    iterator = progress(range(len(grid))) if progress else range(len(grid))
    for i in iterator:
        t = grid[i]
        a_t = abar[t]
        a_prev = abar[grid[i + 1]] if i + 1 < len(grid) else torch.ones((), dtype=abar.dtype, device=abar.device)
        t_batch = torch.full((batch,), t, device=x.device, dtype=torch.long)
        out = net(x, t_batch, tokens, x0_sc).to(x.dtype)
        x0_hat = diffusion.x0_from_output(out, x, t_batch)
        eps_hat = diffusion.eps_from_x0(x0_hat, x, t_batch)
        if diffusion.clip:
            x0_hat = x0_hat.clamp(-1, 1)
        sigma = eta * torch.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        dir_coef = torch.sqrt((1 - a_prev - sigma**2).clamp(min=0))
        x = a_prev.sqrt().to(x.dtype) * x0_hat + dir_coef.to(x.dtype) * eps_hat
        if eta > 0 and i + 1 < len(grid):
            z = noise(i, tuple(x.shape)) if noise else torch.randn_like(x)
            x = x + sigma.to(x.dtype) * z.to(x)
        if self_condition:
            x0_sc = x0_hat.clamp(-1, 1)
    return x


def classifier_free_guidance(
    net: Callable[..., torch.Tensor], null_token: int, scale: float
) -> Callable[..., torch.Tensor]:
    """o = o_uncond + scale * (o_cond - o_uncond), the unconditional pass using the learned null token.

    `null_token` is the first null token (2 * n_bins); the unconditional pass gets tokens + null_token, which
    the embedding reads as null while the anatomical prior still follows each sample's z-bin.
    """
    if scale == 1.0:
        return net

    def guided(x_t, t, tokens, x0_sc=None):
        both = net(
            torch.cat([x_t, x_t]),
            torch.cat([t, t]),
            torch.cat([tokens, tokens + null_token]),
            None if x0_sc is None else torch.cat([x0_sc, x0_sc]),
        )
        cond, uncond = both.chunk(2)
        return uncond + scale * (cond - uncond)

    return guided
