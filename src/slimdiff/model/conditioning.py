"""Conditioning embedding: token = z_bin + n_bins * class  ->  a vector added to the timestep embedding.

    e_z = Linear([E_bin(z_bin) ; PE(z_centre(z_bin))])        learned bin + sinusoidal code of the bin centre
    e   = Linear([E_class(class) ; e_z])                      fused with the pathology class

Tokens >= 2 * n_bins are the classifier-free-guidance null condition (a learned vector), when enabled. A
dropped token k is written k + 2 * n_bins: the embedding sees only "null", while a model with an anatomical
prior still looks up the prior of the slice's own z-bin (token % n_bins), as the upstream method does.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slimdiff.data.slices import z_bin_centre


def sinusoidal_code(positions: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer code: even dims sin(z w_k), odd dims cos(z w_k), w_k = 10000^(-2k/dim)."""
    k = torch.arange(dim // 2, dtype=torch.float64)
    freqs = torch.exp(-2.0 * k * math.log(10000.0) / dim)
    angles = positions.double()[:, None] * freqs[None, :]
    code = torch.zeros(len(positions), dim, dtype=torch.float64)
    code[:, 0::2] = torch.sin(angles)
    code[:, 1::2] = torch.cos(angles)
    return code.float()


def null_token_offset(n_bins: int) -> int:
    """The first null token: token k with its condition dropped (classifier-free guidance) is k + this."""
    return 2 * n_bins


class ConditionEmbedding(nn.Module):
    def __init__(self, dim: int, n_bins: int, z_range: tuple[int, int], null_token: bool = False):
        super().__init__()
        self.n_bins, self.z_range = n_bins, tuple(z_range)
        self.class_embedding = nn.Embedding(2, dim)
        self.bin_embedding = nn.Embedding(n_bins, dim)
        centres = torch.as_tensor(z_bin_centre(torch.arange(n_bins).numpy(), tuple(z_range), n_bins))
        self.register_buffer("bin_code", sinusoidal_code(centres, dim), persistent=False)
        self.z_fuse = nn.Linear(2 * dim, dim)
        self.fuse = nn.Linear(2 * dim, dim)
        self.null = nn.Parameter(0.02 * torch.randn(dim)) if null_token else None

    @property
    def null_token(self) -> int:
        return null_token_offset(self.n_bins)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.long()
        is_null = tokens >= self.null_token
        real = tokens.clamp(0, self.null_token - 1)
        cls, z_bin = real // self.n_bins, real % self.n_bins
        e_z = self.z_fuse(torch.cat([self.bin_embedding(z_bin), self.bin_code[z_bin]], dim=-1))
        e = self.fuse(torch.cat([self.class_embedding(cls), e_z], dim=-1))
        if self.null is not None:
            e = torch.where(is_null[:, None], self.null.expand_as(e), e)
        return e
