"""KID and FID from Inception features, with torch-fidelity's estimators.

KID: unbiased MMD^2 with the cubic polynomial kernel (x.y/d + 1)^3, mean and std over random subsets drawn
without replacement (seeded); the subset size is capped by the smaller set, so small z-bins still get a value.
FID: Frechet distance between Gaussians fitted to the two feature sets.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric

MIN_KID_SET = 4


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict:
    """{'kid_mean', 'kid_std', 'kid_subset_size'}; NaN (and `null_reasons`) when a set has < MIN_KID_SET rows.

    A set smaller than subset_size gets subsets of half its size (at least 10, at most all of it), the
    paper's guard: subsets of the whole smaller set would resample only the other side and understate the std.
    """
    n = min(len(real), len(fake))
    if n < MIN_KID_SET:
        why = f"fewer than {MIN_KID_SET} images on a side ({len(real)} real, {len(fake)} synthetic)"
        return {
            "kid_mean": float("nan"),
            "kid_std": float("nan"),
            "kid_subset_size": 0,
            "null_reasons": {"kid_mean": why, "kid_std": why},
        }
    size = subset_size if n >= subset_size else min(n, max(n // 2, 10))
    mean, std = poly_mmd(real, fake, subsets, size, seed)
    return {"kid_mean": mean, "kid_std": std, "kid_subset_size": size}


def poly_mmd(real: np.ndarray, fake: np.ndarray, subsets: int, subset_size: int, seed: int) -> tuple[float, float]:
    """Mean and population std over `subsets` of the unbiased MMD^2 under (x.y/d + 1)^3, each subset drawn
    without replacement, `subset_size` rows from each side (torch-fidelity's KID estimator, any features)."""
    out = kid_features_to_metric(
        torch.as_tensor(real),
        torch.as_tensor(fake),
        kid_subsets=subsets,
        kid_subset_size=subset_size,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
        rng_seed=seed,
        verbose=False,
    )
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    if min(len(real), len(fake)) < 2:
        return float("nan")
    stats = [fid_features_to_statistics(torch.as_tensor(f)) for f in (real, fake)]
    return float(fid_statistics_to_metric(stats[0], stats[1], verbose=False)["frechet_inception_distance"])
