"""N4 bias-field correction (Tustison et al. 2010, IEEE TMI 29:1310) with SimpleITK, inside the brain mask.

Scanner receive coils leave a smooth multiplicative field on the image: the same tissue is brighter near a
coil. The cache's percentile scaling and the KDE peak assume one intensity per tissue, so the field is removed
first. N4 is fitted on a shrunk copy (the field is smooth, so fitting on every voxel adds time, not accuracy)
and the log-field is then evaluated on the full grid. It runs after brain extraction, inside the brain mask:
scalp fat and the background would otherwise pull the fitted field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class N4Result:
    image: np.ndarray  # corrected, float32, zero outside the mask
    field: np.ndarray  # the multiplicative field (image = corrected * field inside the mask), float32

    def field_range(self, mask: np.ndarray) -> tuple[float, float]:
        values = self.field[mask]
        return (float(values.min()), float(values.max())) if values.size else (float("nan"), float("nan"))


def _sitk(array: np.ndarray, spacing: Sequence[float], dtype=None):
    import SimpleITK as sitk

    # SimpleITK indexes arrays (z, y, x); the voxel order itself does not matter to N4 beyond the spacing.
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0)), dtype=dtype))
    img.SetSpacing(tuple(float(s) for s in spacing))
    return img


def n4_correct(
    image: np.ndarray,
    mask: np.ndarray,
    spacing: Sequence[float],
    shrink_factor: int = 4,
    iterations: Sequence[int] = (50, 50, 50, 50),
    spline_distance_mm: float = 100.0,
    convergence: float = 1e-3,
) -> N4Result:
    """Fit N4 on the voxels of `mask` and return the corrected image and the field.

    `iterations` has one entry per fitting level (each level halves the B-spline knot spacing);
    `spline_distance_mm` is the knot spacing of the first level, the ANTs/N4 default of about 200 mm halved
    for a head-sized field of view.
    """
    import SimpleITK as sitk

    mask = np.asarray(mask, bool)
    positive = np.clip(image.astype(np.float32), 0.0, None)
    # log(0) is undefined: N4 works on log intensities, so the fit is restricted to positive voxels.
    fit_mask = mask & (positive > 0)
    img = _sitk(positive, spacing, np.float32)
    msk = _sitk(fit_mask.astype(np.uint8), spacing, np.uint8)
    shrink = [int(shrink_factor)] * 3
    small, small_mask = sitk.Shrink(img, shrink), sitk.Shrink(msk, shrink)
    extent = np.array(small.GetSize()) * np.array(small.GetSpacing())
    control_points = [max(4, int(np.ceil(e / spline_distance_mm)) + 3) for e in extent]  # spline order 3

    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.SetConvergenceThreshold(float(convergence))
    n4.SetNumberOfControlPoints(control_points)
    n4.Execute(small, small_mask)
    log_field = n4.GetLogBiasFieldAsImage(img)
    field = np.exp(np.transpose(sitk.GetArrayFromImage(log_field), (2, 1, 0))).astype(np.float32)
    corrected = np.where(mask, positive / field, 0.0).astype(np.float32)
    return N4Result(image=corrected, field=field)
