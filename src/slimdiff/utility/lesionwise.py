"""Lesion-wise counts for a segmenter's predictions on real test slices.

Pixel Dice hides what a clinician cares about: is each lesion found at all, and how many false alarms appear on
slices with no lesion. A lesion is what MMD-MF and the lesion statistics count: a 4-connected component
(scipy.ndimage.label's default structure) of at least MIN_LESION_PX pixels of a binary mask.
"""

from __future__ import annotations

import numpy as np

from slimdiff.metrics.lesion_stats import lesion_components
from slimdiff.metrics.morphology import MIN_LESION_PX


def _as_stack(masks: np.ndarray) -> np.ndarray:
    """(N, H, W) boolean masks; a single (H, W) mask becomes a stack of one."""
    masks = np.asarray(masks, dtype=bool)
    return masks.reshape(-1, *masks.shape[-2:])


def lesion_sensitivity(true_masks: np.ndarray, pred_masks: np.ndarray, min_px: int = MIN_LESION_PX) -> tuple[int, int]:
    """(found, total) real lesions over a stack of binary (N, H, W) masks.

    A real lesion is a 4-connected component of the true mask with at least min_px pixels. It counts as found
    when ANY predicted foreground pixel overlaps it, however small the predicted region: a detection rule, so a
    lesion a segmenter points at but under-segments is still found (Dice measures the outline separately).
    """
    true_masks, pred_masks = _as_stack(true_masks), _as_stack(pred_masks)
    if true_masks.shape != pred_masks.shape:
        raise ValueError(f"true masks {true_masks.shape} and predictions {pred_masks.shape} differ in shape")
    found = total = 0
    for truth, pred in zip(true_masks, pred_masks, strict=True):
        for lesion in lesion_components(truth, 0.0, min_px):
            total += 1
            found += bool((lesion & pred).any())
    return found, total


def false_positive_components(pred_masks: np.ndarray, min_px: int = MIN_LESION_PX) -> int:
    """Number of predicted 4-connected components of at least min_px pixels over a stack of binary masks.

    Used on control (lesion-free, class 0) slices, where every predicted lesion is a false alarm; components
    below min_px are ignored, as they are for the real lesions, so both counts use one definition of a lesion.
    """
    return sum(len(lesion_components(pred, 0.0, min_px)) for pred in _as_stack(pred_masks))
