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
from skimage.morphology import convex_hull_image

from slimdiff.names import MIN_LESION_PX, MIN_LESIONS, MORPHOLOGY_FEATURES

FEATURES = list(MORPHOLOGY_FEATURES)  # a list: a tuple would index one column of a DataFrame
TAU_SWEEP = (-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3)


def lesion_features(masks: np.ndarray, tau: float = 0.0, min_px: int = MIN_LESION_PX) -> pd.DataFrame:
    """One row per lesion component of every mask, the 9 features plus the mask index it came from."""
    tables = []
    for i, mask in enumerate(masks):
        labels, n = ndimage.label(np.asarray(mask, dtype=np.float32) > tau)  # 4-connectivity
        if n:
            table = component_features(labels, n, min_px)
            tables.append(np.column_stack([np.full(len(table), i), table]))
    rows = np.concatenate(tables) if tables else np.empty((0, 1 + len(FEATURES)))
    return pd.DataFrame(rows, columns=["mask_index", *FEATURES], dtype=float).astype({"mask_index": int})


def component_features(labels: np.ndarray, n: int, min_px: int = MIN_LESION_PX) -> np.ndarray:
    """The 9 features of every component of at least min_px pixels, in label order: skimage's regionprops
    definitions (tests/test_metrics.py checks them against regionprops), computed for all components at once.

    Why not regionprops: an untrained or early model draws noise masks with hundreds of components per slice,
    and regionprops' per-component Python costs about 1 ms each (the pilot's metrics_mask spent minutes there).
    Only the convex hull (solidity) is still computed per component.
    """
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels)
    starts = np.array([[b[0].start, b[1].start] for b in boxes])
    sizes = np.array([[b[0].stop - b[0].start, b[1].stop - b[1].start] for b in boxes])
    # Central moments in each component's own box (regionprops' local frame): two passes, so that a
    # one-pixel-wide component has an exactly zero second moment across it.
    rows, cols = np.nonzero(labels)
    k = labels[rows, cols] - 1
    local_r, local_c = rows - starts[k, 0], cols - starts[k, 1]
    centre_r = np.bincount(k, local_r, minlength=n) / area
    centre_c = np.bincount(k, local_c, minlength=n) / area
    dr, dc = local_r - centre_r[k], local_c - centre_c[k]
    mu_rr = np.bincount(k, dr * dr, minlength=n)
    mu_cc = np.bincount(k, dc * dc, minlength=n)
    mu_rc = np.bincount(k, dr * dc, minlength=n)
    # regionprops' inertia tensor: [[mu_cc, -mu_rc], [-mu_rc, mu_rr]] / area; its eigenvalues clipped at 0.
    tensor = np.stack([np.stack([mu_cc, -mu_rc], -1), np.stack([-mu_rc, mu_rr], -1)], -2) / area[:, None, None]
    eig = np.clip(np.linalg.eigvalsh(tensor), 0, None)  # ascending
    small, large = eig[:, 0], eig[:, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        eccentricity = np.where(large == 0, 0.0, np.sqrt(1 - small / large))
    perimeter = _perimeters(labels, n)
    keep = np.flatnonzero(area >= min_px)
    solidity = np.array([area[j] / _convex_area(labels[boxes[j]] == j + 1, area[j]) for j in keep], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        circularity = np.where(perimeter > 0, np.minimum(4 * np.pi * area / perimeter**2, 1.0), 0.0)
    features = np.column_stack(
        [
            area,
            perimeter,
            circularity,
            np.zeros(n),  # solidity, below
            area / sizes.prod(axis=1),
            eccentricity,
            4 * np.sqrt(large),
            4 * np.sqrt(small),
            (4 * area / np.pi) ** (1 / 2),
        ]
    ).astype(float)[keep]
    features[:, FEATURES.index("solidity")] = solidity
    return features


# skimage.measure.perimeter (4-neighbourhood): every border pixel of a component is coded by its border
# neighbours (1 + 2 per edge neighbour + 10 per corner neighbour) and the code weighted by these lengths.
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1
_PERIMETER_WEIGHTS[[21, 33]] = np.sqrt(2)
_PERIMETER_WEIGHTS[[13, 23]] = (1 + np.sqrt(2)) / 2
_EDGES = ((-1, 0), (1, 0), (0, -1), (0, 1))
_CORNERS = ((-1, -1), (-1, 1), (1, -1), (1, 1))


def _perimeters(labels: np.ndarray, n: int) -> np.ndarray:
    """skimage's perimeter of each component on its own, for all components of a labelled 2D map at once."""
    h, w = labels.shape

    def neighbour(image: np.ndarray, dr: int, dc: int) -> np.ndarray:
        padded = np.pad(image, 1)
        return padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w]

    inside = labels > 0
    interior = inside.copy()
    for dr, dc in _EDGES:  # binary erosion by the cross, outside the image counting as background
        interior &= neighbour(labels, dr, dc) == labels
    border = np.where(inside & ~interior, labels, 0)
    on_border = border > 0
    code = np.ones(labels.shape, dtype=np.int64)
    for dr, dc in _EDGES:
        code += 2 * (neighbour(border, dr, dc) == border)
    for dr, dc in _CORNERS:
        code += 10 * (neighbour(border, dr, dc) == border)
    histogram = np.bincount(border[on_border] * 50 + code[on_border], minlength=(n + 1) * 50).reshape(n + 1, 50)
    return histogram[1:] @ _PERIMETER_WEIGHTS


def _convex_area(component: np.ndarray, area: int) -> int:
    """Pixels of the component's convex hull image (regionprops' area_convex); a full box is its own hull."""
    if area == component.size:
        return area
    return int(convex_hull_image(component).sum())


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
    real_masks: np.ndarray | pd.DataFrame,
    fake_masks: np.ndarray,
    taus=TAU_SWEEP,
    subsets: int = 100,
    subset_size: int = 500,
    seed: int = 0,
    known: dict[float, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """MMD-MF as the synthetic masks' threshold moves (real masks stay at tau = 0).

    The real side may be its lesion_features table; `known` holds synthetic tables the caller already has
    (tau -> the features of fake_masks at that tau, rows in mask order), which are not recomputed.
    """
    real = real_masks if isinstance(real_masks, pd.DataFrame) else lesion_features(real_masks, 0.0)
    known = known or {}
    rows = []
    for tau in taus:
        fake = known[tau] if tau in known else lesion_features(fake_masks, tau)
        rows.append({"tau": tau, **mmd_mf(real, fake, subsets=subsets, subset_size=subset_size, seed=seed)})
    return pd.DataFrame(rows)
