"""Reorientation to the closest canonical orientation (RAS+): a lossless permutation/flip of the voxel axes.

Every later step (HD-BET's axis convention, N4's spline grid, the QC views, the cache's own RAS step) then sees
the same axis order whatever orientation the scanner wrote. No resampling happens: nibabel's
``as_closest_canonical`` only permutes and flips axes and rewrites the affine, so the ROI carried along stays
exactly on the FLAIR's grid and keeps its values.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nibabel import orientations


def to_canonical(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The image in RAS+ voxel order (the same object if it already is)."""
    return nib.as_closest_canonical(img)


def axcodes(affine: np.ndarray) -> str:
    return "".join(orientations.aff2axcodes(affine))


def to_orientation(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    """The image with its voxel axes permuted/flipped to `codes` (e.g. "LPS"); the inverse of to_canonical."""
    current = orientations.io_orientation(img.affine)
    target = orientations.axcodes2ornt(tuple(codes))
    transform = orientations.ornt_transform(current, target)
    return img.as_reoriented(transform)
