"""Anatomical z-bin priors: where brain is expected in each z-bin, and how the model reads them.

Per training slice: robust scale to [0, 1] (1st-99th percentile), Gaussian blur, Otsu threshold, keep the
largest component (up to 3 in the lowest bins, where the two hemispheres of the cerebellum and temporal
lobes can be separate), fill holes. Per bin: pixels covered in at least `prob_threshold` of its slices,
dilated by one pixel. Computed from the TRAIN slices of the fold only (upstream also used test slices).

The model gets them either as one extra input channel (+1 inside, -1 outside) or as cross-attention
context tokens from a small convolutional encoder with a 2D sinusoidal position code.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu
from torch import nn

from slimdiff.model.conditioning import sinusoidal_code

PRIOR_DEFAULTS = {
    "prob_threshold": 0.2,
    "blur_sigma_px": 0.7,
    "min_component_fraction": 500 / 160**2,  # upstream: 500 px of a 160 x 160 slice
    "n_first_bins": 5,
    "relaxed_factor": 0.1,
}


def slice_foreground(image: np.ndarray, z_bin: int, params: dict = PRIOR_DEFAULTS) -> np.ndarray | None:
    lo, hi = np.percentile(image, [1, 99])
    if hi <= lo:
        return None
    scaled = ndimage.gaussian_filter(np.clip((image - lo) / (hi - lo), 0, 1), params["blur_sigma_px"])
    fg = scaled > threshold_otsu(scaled, nbins=256)
    labels, n = ndimage.label(fg)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())[1:]
    order = np.argsort(sizes)[::-1]
    min_px = params["min_component_fraction"] * image.size
    if sizes[order[0]] < min_px:
        return None
    keep = [order[0] + 1]
    if z_bin < params["n_first_bins"]:
        keep += [i + 1 for i in order[1:3] if sizes[i] >= params["relaxed_factor"] * min_px]
    return ndimage.binary_fill_holes(np.isin(labels, keep))


def compute_zbin_priors(images: np.ndarray, z_bins: np.ndarray, n_bins: int, params: dict = PRIOR_DEFAULTS):
    """(n_bins, H, W) bool ROI per z-bin from the given slices (an empty bin gives an all-false prior)."""
    h, w = images.shape[1:]
    counts = np.zeros((n_bins, h, w))
    valid = np.zeros(n_bins)
    for image, b in zip(images, z_bins, strict=True):
        fg = slice_foreground(np.asarray(image, dtype=np.float64), int(b), params)
        if fg is not None:
            counts[b] += fg
            valid[b] += 1
    prob = counts / np.maximum(valid, 1)[:, None, None]
    roi = prob >= params["prob_threshold"]
    cross = ndimage.generate_binary_structure(2, 1)
    return np.stack([ndimage.binary_dilation(r, cross) if r.any() else r for r in roi])


class PriorEncoder(nn.Module):
    """Prior map (B,1,H,W) -> context tokens (B, H/8 * W/8, dim) with a 2D sinusoidal position code."""

    def __init__(self, dim: int, hidden: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers, c_in = [], 1
        for c in hidden:
            layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU()]
            c_in = c
        layers.append(nn.Conv2d(c_in, dim, 1))
        self.net = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, prior: torch.Tensor) -> torch.Tensor:
        feats = self.net(prior)
        b, d, h, w = feats.shape
        rows = sinusoidal_code(torch.arange(h), d // 2).to(feats)
        cols = sinusoidal_code(torch.arange(w), d // 2).to(feats)
        pos = torch.cat([rows[:, None, :].expand(h, w, -1), cols[None, :, :].expand(h, w, -1)], dim=-1)
        return feats.flatten(2).transpose(1, 2) + pos.reshape(1, h * w, d)
