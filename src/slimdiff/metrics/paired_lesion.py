"""MMD-PL: does a generated image look like a lesion where its own generated mask says there is one?

The paired-lesion, image-given-mask metric of the camera-ready table (upstream posthoc/paired_lesion_mmd.py,
re-implemented from spec/evaluation.md §2.8). MMD-MF scores the masks' shapes alone; MMD-PL scores each
(image, mask) pair together: every lesion component of the mask is described by the intensities of its own
image under and around it.

Per slice (image I in [-1, 1]):
* brain B = (I > -0.95) eroded once (cross element); mu_B, sigma_B = mean and population std of I over B
  (the slice is skipped when sigma_B <= 1e-6); |grad I| = Sobel magnitude (axes 0 and 1, reflect), whose
  mean over B (floored at 1e-6) normalises the edge feature.
* lesions: mask > tau, 4-connected components of >= 5 px. Per component M: ring R = M dilated 5 times
  (cross element) minus M, within B; M_b = M within B; boundary = M dilated once minus M, within B. A
  component with an empty R or M_b is skipped.

Five features per lesion:
    delta       = mean(I | M_b) - mean(I | R)                 contrast to the surrounding ring
    z_in        = (mean(I | M_b) - mu_B) / sigma_B            lesion intensity as a z-score in the brain
    sigma_norm  = std(I | M_b) / sigma_B                      texture (intensity spread inside the lesion)
    edge_align  = mean(|grad I| | boundary) / mean(|grad I| | B)   do image edges follow the mask outline
    frac_bright = share of M_b pixels above mu_B + sigma_B    how much of the lesion is hyperintense
Rows with a non-finite value are dropped.

Scores: the unbiased MMD^2 under the cubic polynomial kernel (x.y/5 + 1)^3 on features z-scored with the
REAL set's mean and population std (a std below 1e-8 becomes 1), over 100 subsets of
max(2, min(500, n_real, n_synthetic)) lesions (MMD-MF's estimator and subset rule); the per-feature
Wasserstein-1 distance on the RAW features; and the bright-fraction falsification number: the mean
frac_bright of the synthetic lesions beside that of the real ones. FCD lesions are FLAIR-hyperintense, so
real lesions have a clearly positive bright fraction (0.235 in the upstream fold 0); a model whose masks
are not drawn where its image is bright scores lower (a lesion no brighter than its brain scores ~0.16 or
less, one at the brain's mean intensity 0), which falsifies "the image follows the mask" whatever the MMD.

Seeds: upstream draws all subsets of all cells from one np.random.default_rng(42), shared across cells in
processing order, so a cell's value depends on which cells were scored before it. Here each call is seeded
on its own (`seed`, default 42) unless a generator is passed as `rng`: then the subset seed is drawn from it,
which reproduces the order dependence (not upstream's exact draws, whose code is not in the released wheel).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.stats import wasserstein_distance

from slimdiff.names import MIN_LESION_PX

FEATURES = ["delta", "z_in", "sigma_norm", "edge_align", "frac_bright"]
BRAIN_THRESHOLD = -0.95
RING_PX = 5
MIN_SIGMA = 1e-6
MIN_PAIRED_LESIONS = 2  # the unbiased MMD needs two rows a side
SUMMARY_STATS = ("mean", "std", "median", "p5", "p95")


def _slice_features(image: np.ndarray, mask: np.ndarray, tau: float, min_px: int, ring_px: int) -> list[list[float]]:
    brain = ndimage.binary_erosion(image > BRAIN_THRESHOLD)
    if not brain.any():
        return []
    values = image[brain]
    mu, sigma = float(values.mean()), float(values.std())
    if not sigma > MIN_SIGMA:
        return []
    labels, _ = ndimage.label(mask > tau)  # 4-connectivity
    grad = None
    rows = []
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        # A crop ring_px + 1 beyond the component's box holds its whole dilated ring.
        box = tuple(slice(max(s.start - ring_px - 1, 0), s.stop + ring_px + 1) for s in box)
        lesion = labels[box] == k
        if lesion.sum() < min_px:
            continue
        brain_c, image_c = brain[box], image[box]
        ring = ndimage.binary_dilation(lesion, iterations=ring_px) & ~lesion & brain_c
        inside = lesion & brain_c
        if not ring.any() or not inside.any():
            continue
        if grad is None:
            grad = np.hypot(ndimage.sobel(image, axis=0, mode="reflect"), ndimage.sobel(image, axis=1, mode="reflect"))
            grad_brain = max(float(grad[brain].mean()), MIN_SIGMA)
        boundary = ndimage.binary_dilation(lesion) & ~lesion & brain_c
        lesion_values = image_c[inside]
        mean_in = float(lesion_values.mean())
        edge = float(grad[box][boundary].mean()) / grad_brain if boundary.any() else float("nan")
        rows.append(
            [
                mean_in - float(image_c[ring].mean()),
                (mean_in - mu) / sigma,
                float(lesion_values.std()) / sigma,
                edge,
                float((lesion_values > mu + sigma).mean()),
            ]
        )
    return rows


def lesion_image_features(
    images: np.ndarray, masks: np.ndarray, tau: float = 0.0, min_px: int = MIN_LESION_PX, ring_px: int = RING_PX
) -> pd.DataFrame:
    """One row per lesion component of every (image, mask) pair: the 5 features and the pair's index."""
    if len(images) != len(masks):
        raise ValueError(f"{len(images)} images but {len(masks)} masks: MMD-PL needs pairs")
    rows = []
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        image = np.asarray(image, dtype=np.float64)
        mask = np.asarray(mask, dtype=np.float32)
        rows.extend([i, *r] for r in _slice_features(image, mask, tau, min_px, ring_px))
    table = pd.DataFrame(rows, columns=["mask_index", *FEATURES], dtype=float).astype({"mask_index": int})
    return table[np.isfinite(table[FEATURES].to_numpy()).all(axis=1)].reset_index(drop=True)


def zscore_with_real(real: pd.DataFrame, fake: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    r, f = real[FEATURES].to_numpy(), fake[FEATURES].to_numpy()
    mu, sd = r.mean(axis=0), r.std(axis=0)
    sd = np.where(sd < 1e-8, 1.0, sd)
    return (r - mu) / sd, (f - mu) / sd


def _too_few(real: pd.DataFrame, fake: pd.DataFrame) -> str | None:
    if min(len(real), len(fake)) < MIN_PAIRED_LESIONS:
        return f"fewer than {MIN_PAIRED_LESIONS} lesions on a side ({len(real)} real, {len(fake)} synthetic)"
    return None


def mmd_pl(
    real: pd.DataFrame,
    fake: pd.DataFrame,
    subsets: int = 100,
    subset_size: int = 500,
    seed: int = 42,
    rng: np.random.Generator | None = None,
) -> dict:
    """{'mmd_pl_mean', 'mmd_pl_std', 'mmd_pl_subset_size', 'n_real_lesions', 'n_fake_lesions'} (+ null_reasons)."""
    out = {"n_real_lesions": len(real), "n_fake_lesions": len(fake)}
    why = _too_few(real, fake)
    if why:
        nan = float("nan")
        reasons = {"mmd_pl_mean": why, "mmd_pl_std": why}
        return {"mmd_pl_mean": nan, "mmd_pl_std": nan, "mmd_pl_subset_size": 0, **out, "null_reasons": reasons}
    from slimdiff.metrics.kid_fid import poly_mmd  # torch-fidelity: imported only when there is something to score

    r, f = zscore_with_real(real, fake)
    size = max(MIN_PAIRED_LESIONS, min(subset_size, len(real), len(fake)))
    if rng is not None:
        seed = int(rng.integers(2**31 - 1))
    mean, std = poly_mmd(r, f, subsets, size, seed)
    return {"mmd_pl_mean": mean, "mmd_pl_std": std, "mmd_pl_subset_size": size, **out}


def wasserstein_per_feature(real: pd.DataFrame, fake: pd.DataFrame) -> dict:
    """1-D Wasserstein-1 distance of each feature between the real and synthetic lesions, on raw values."""
    why = _too_few(real, fake)
    if why:
        return {**{name: float("nan") for name in FEATURES}, "null_reasons": dict.fromkeys(FEATURES, why)}
    return {name: float(wasserstein_distance(real[name], fake[name])) for name in FEATURES}


def bright_fraction(real: pd.DataFrame, fake: pd.DataFrame) -> dict:
    """The falsification number: mean frac_bright of the synthetic lesions, beside the real lesions' mean."""
    synth = float(fake["frac_bright"].mean()) if len(fake) else float("nan")
    ref = float(real["frac_bright"].mean()) if len(real) else float("nan")
    return {"frac_bright_synth": synth, "frac_bright_real": ref, "frac_bright_gap": synth - ref}


def feature_summary(features: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per feature: mean, population std, median, 5th and 95th percentile (upstream's features table)."""
    out = {}
    for name in FEATURES:
        v = features[name].to_numpy()
        if not len(v):
            out[name] = dict.fromkeys(SUMMARY_STATS, float("nan"))
            continue
        p5, median, p95 = np.percentile(v, [5, 50, 95])
        stats = (v.mean(), v.std(), median, p5, p95)
        out[name] = {k: float(x) for k, x in zip(SUMMARY_STATS, stats, strict=True)}
    return out


def paired_lesion_metrics(
    real: pd.DataFrame,
    fake: pd.DataFrame,
    subsets: int = 100,
    subset_size: int = 500,
    seed: int = 42,
    rng: np.random.Generator | None = None,
) -> dict:
    """Everything MMD-PL reports for one synthetic set against the real one, from lesion_image_features tables:
    the MMD (mmd_pl_*), per-feature W1 (`wasserstein`), the bright fraction and per-feature summaries."""
    return {
        **mmd_pl(real, fake, subsets=subsets, subset_size=subset_size, seed=seed, rng=rng),
        **bright_fraction(real, fake),
        "wasserstein": wasserstein_per_feature(real, fake),
        "features": {"real": feature_summary(real), "synthetic": feature_summary(fake)},
    }
