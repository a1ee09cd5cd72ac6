"""MMD-MF: do generated lesion masks have the shapes of real ones?

Masks are binarised at tau (mask > tau); each 4-connected component of at least 5 px is one lesion, described
by 9 regionprops features (area, perimeter, circularity, solidity, extent, eccentricity, major and minor axis
length, equivalent diameter). Both sets are z-scored with the REAL set's mean and std, then compared with the
unbiased MMD^2 under the cubic polynomial kernel (x.y/9 + 1)^3, averaged over subsets of
min(500, n_real, n_synthetic) lesions, upstream's rule (the KID estimator on morphology instead of Inception
features; image KID's half-the-smaller-set guard does not apply here). Per-feature Wasserstein-1 distances say
which shape property differs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import wasserstein_distance
from skimage.measure import regionprops

from slimdiff.names import MIN_LESION_PX, MIN_LESIONS, MORPHOLOGY_FEATURES

FEATURES = list(MORPHOLOGY_FEATURES)  # a list: a tuple would index one column of a DataFrame
TAU_SWEEP = (-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3)


def lesion_features(masks: np.ndarray, tau: float = 0.0, min_px: int = MIN_LESION_PX) -> pd.DataFrame:
    """One row per lesion component of every mask, the 9 features plus the mask index it came from."""
    rows = []
    for i, mask in enumerate(masks):
        labels, _ = ndimage.label(np.asarray(mask, dtype=np.float32) > tau)  # 4-connectivity
        for region in regionprops(labels):
            if region.area < min_px:
                continue
            perimeter = max(float(region.perimeter), 0.0)
            circ = min(4 * np.pi * region.area / perimeter**2, 1.0) if perimeter > 0 else 0.0
            rows.append(
                [
                    i,
                    region.area,
                    perimeter,
                    circ,
                    region.solidity,
                    region.extent,
                    region.eccentricity,
                    region.axis_major_length,
                    region.axis_minor_length,
                    region.equivalent_diameter_area,
                ]
            )
    return pd.DataFrame(rows, columns=["mask_index", *FEATURES], dtype=float).astype({"mask_index": int})


def zscore_with_real(real: pd.DataFrame, fake: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    mu = real[FEATURES].mean().to_numpy()
    sd = np.maximum(real[FEATURES].std(ddof=0).to_numpy(), 1e-8)
    return (real[FEATURES].to_numpy() - mu) / sd, (fake[FEATURES].to_numpy() - mu) / sd


def mmd_mf(real: pd.DataFrame, fake: pd.DataFrame, subsets: int = 100, subset_size: int = 500, seed: int = 0) -> dict:
    if min(len(real), len(fake)) < MIN_LESIONS:
        why = f"fewer than {MIN_LESIONS} lesions on a side ({len(real)} real, {len(fake)} synthetic)"
        return {
            "mmd_mf_mean": float("nan"),
            "mmd_mf_std": float("nan"),
            "mmd_mf_subset_size": 0,
            "n_real_lesions": len(real),
            "n_fake_lesions": len(fake),
            "null_reasons": {"mmd_mf_mean": why, "mmd_mf_std": why},
        }
    from slimdiff.metrics.kid_fid import poly_mmd  # torch-fidelity: imported only when there is something to score

    r, f = zscore_with_real(real, fake)
    # Upstream's subset rule: every subset is the whole smaller set when it has fewer than subset_size lesions.
    size = min(subset_size, len(real), len(fake))
    mean, std = poly_mmd(r, f, subsets, size, seed)
    return {
        "mmd_mf_mean": mean,
        "mmd_mf_std": std,
        "mmd_mf_subset_size": size,
        "n_real_lesions": len(real),
        "n_fake_lesions": len(fake),
    }


def wasserstein_per_feature(real: pd.DataFrame, fake: pd.DataFrame) -> dict[str, float]:
    if min(len(real), len(fake)) < MIN_LESIONS:
        why = f"fewer than {MIN_LESIONS} lesions on a side ({len(real)} real, {len(fake)} synthetic)"
        names = [*FEATURES, "geometric_mean"]
        return {**{name: float("nan") for name in names}, "null_reasons": dict.fromkeys(names, why)}
    r, f = zscore_with_real(real, fake)
    w = {name: float(wasserstein_distance(r[:, j], f[:, j])) for j, name in enumerate(FEATURES)}
    w["geometric_mean"] = float(np.exp(np.mean(np.log(np.array(list(w.values())) + 1e-8))))
    return w


def tau_sweep(
    real_masks: np.ndarray,
    fake_masks: np.ndarray,
    taus=TAU_SWEEP,
    subsets: int = 100,
    subset_size: int = 500,
    seed: int = 0,
) -> pd.DataFrame:
    """MMD-MF as the synthetic masks' threshold moves (real masks stay at tau = 0)."""
    real = lesion_features(real_masks, 0.0)
    rows = []
    for tau in taus:
        fake = lesion_features(fake_masks, tau)
        rows.append({"tau": tau, **mmd_mf(real, fake, subsets=subsets, subset_size=subset_size, seed=seed)})
    return pd.DataFrame(rows)
