"""Does a model draw lesions where and when it should? Counts behind MMD-MF, per sample set.

MMD-MF compares lesion *shapes*, and needs lesions to compare. These numbers say whether there are any:

* lesion_rate_cls1: share of lesion-token (class 1) samples whose mask, binarised at tau, holds at least one
  4-connected component of at least MIN_LESION_PX pixels (the same lesions MMD-MF counts);
* lesion_rate_cls0: the same share among lesion-free-token (class 0) samples: drawing lesions there is wrong;
* lesion area quartiles (px) of every counted component, to set against the real test lesions;
* inside_brain: share of lesion pixels that lie on brain in the sample's own image (image > brain_threshold).

The same function describes the real test slices, so every number has its real counterpart.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from slimdiff.names import MIN_LESION_PX


def lesion_components(mask: np.ndarray, tau: float = 0.0, min_px: int = MIN_LESION_PX) -> list[np.ndarray]:
    """Boolean maps of the 4-connected components of mask > tau with at least min_px pixels."""
    labels, n = ndimage.label(np.asarray(mask, dtype=np.float32) > tau)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())
    return [labels == k for k in range(1, n + 1) if sizes[k] >= min_px]


def lesion_stats(
    images: np.ndarray,
    masks: np.ndarray,
    classes: np.ndarray,
    tau: float = 0.0,
    brain_threshold: float = -0.9,
    min_px: int = MIN_LESION_PX,
) -> dict:
    """Lesion presence per class, lesion areas and their overlap with the brain for one set of (N, H, W) pairs."""
    classes = np.asarray(classes)
    has_lesion = np.zeros(len(masks), bool)
    areas, on_brain, lesion_px = [], 0, 0
    for i, (image, mask) in enumerate(zip(images, masks, strict=True)):
        # Counted per label, not per component map: a noise mask of an early model has hundreds of components.
        labels, n = ndimage.label(np.asarray(mask, dtype=np.float32) > tau)
        brain = np.asarray(image, np.float32) > brain_threshold
        area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
        brain_px = np.bincount(labels[brain], minlength=n + 1)[1:]
        kept = area >= min_px
        has_lesion[i] = bool(kept.any())
        areas.extend(int(a) for a in area[kept])
        on_brain += int(brain_px[kept].sum())
        lesion_px += int(area[kept].sum())
    out: dict = {"n_lesions": len(areas)}
    for cls in (0, 1):
        sel = classes == cls
        out[f"n_cls{cls}"] = int(sel.sum())
        out[f"lesion_rate_cls{cls}"] = float(has_lesion[sel].mean()) if sel.any() else None
    q = np.percentile(areas, [25, 50, 75]) if areas else [None] * 3
    out.update(
        {
            "area_q25": None if q[0] is None else float(q[0]),
            "area_median": None if q[1] is None else float(q[1]),
            "area_q75": None if q[2] is None else float(q[2]),
            "inside_brain": float(on_brain / lesion_px) if lesion_px else None,
        }
    )
    reasons = {f"lesion_rate_cls{c}": f"no class-{c} slices" for c in (0, 1) if out[f"lesion_rate_cls{c}"] is None}
    if not areas:
        reasons.update(dict.fromkeys(("area_q25", "area_median", "area_q75", "inside_brain"), "no lesions"))
    if reasons:
        out["null_reasons"] = reasons
    return out
