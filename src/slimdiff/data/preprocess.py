"""Volume preprocessing with MONAI transforms, in the order the upstream method fixes.

RAS orientation -> resample to `spacing` (image bilinear, mask nearest) -> centre crop/zero-pad to
`roi_size` -> image percentile scaling to [-1, 1] over the whole cropped volume, clipped; mask binarised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, ResizeWithPadOrCrop, ScaleIntensityRangePercentiles, Spacing


def preprocess_volume(
    image: np.ndarray,
    affine: np.ndarray,
    mask: np.ndarray | None,
    spacing: Sequence[float],
    roi_size: Sequence[int],
    percentiles: Sequence[float] = (0.5, 99.5),
) -> tuple[np.ndarray, np.ndarray]:
    """Return (image in [-1, 1] float32, mask bool), both of shape `roi_size`, axes R-L, P-A, I-S."""
    affine_t = torch.as_tensor(affine, dtype=torch.float64)
    img = MetaTensor(torch.as_tensor(image, dtype=torch.float32)[None], affine=affine_t)
    seg = MetaTensor(
        torch.as_tensor(np.zeros(image.shape, np.float32) if mask is None else mask.astype(np.float32))[None],
        affine=affine_t.clone(),
    )
    orient = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))
    crop = ResizeWithPadOrCrop(spatial_size=tuple(roi_size), mode="constant")
    img = crop(Spacing(pixdim=tuple(spacing), mode="bilinear")(orient(img)))
    seg = crop(Spacing(pixdim=tuple(spacing), mode="nearest")(orient(seg)))
    lo, hi = percentiles
    img = ScaleIntensityRangePercentiles(lower=lo, upper=hi, b_min=-1.0, b_max=1.0, clip=True)(img)
    return np.asarray(img[0], dtype=np.float32), np.asarray(seg[0]) > 0.5
