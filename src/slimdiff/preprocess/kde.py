"""KDE white-matter-peak normalisation: divide by the tissue mode of the brain's intensity density.

The method of intensity-normalization's ``KDENormalize`` (J. C. Reinhold et al., "Evaluating the impact of
intensity normalization on MR image synthesis", Proc. SPIE 10949, Medical Imaging 2019;
github.com/jcreinhold/intensity-normalization, ``util/histogram_tools.py``): a Gaussian kernel density of
the brain voxels with bandwidth max/80 (``smooth_histogram``), then the tissue mode by modality
(``get_tissue_mode``): the *last* local maximum for T1 (white matter is the brightest tissue there, so the last
peak is white matter; the top 4 % are dropped first as a tail), the *largest* mode for T2 and FLAIR (white
matter fills most of the brain and is neither the darkest nor the brightest tissue there, so the density's
global maximum is white matter), the first for PD. The image is then scaled as ``image / mode * norm_value``
(location 0, the package's convention). intensity-normalization 4 needs Python 3.12 (this project pins
3.11), so this is a small re-implementation with scipy: the density is evaluated the way statsmodels'
FFT KDE (which the package calls) does it, by binning and Gaussian smoothing, but on a finer grid than the
package's 80 points so the peak is not quantised to 1/80 of the intensity range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

MODES = {"flair": "largest", "t2": "largest", "t1": "last", "pd": "first"}


@dataclass
class KDEResult:
    image: np.ndarray  # scaled, float32
    peak_before: float  # the tissue mode of the input, in input units
    peak_after: float  # the tissue mode of the output (= the set value up to the density's resolution)


def density(values: np.ndarray, bins: int = 2048, bandwidth_fraction: float = 1 / 80) -> tuple[np.ndarray, np.ndarray]:
    """(grid, density) of `values`: Gaussian kernel of bandwidth `bandwidth_fraction` * max, binned."""
    values = np.asarray(values, np.float64).ravel()
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.array([lo]), np.array([1.0])
    bandwidth = bandwidth_fraction * max(abs(hi), abs(lo))
    pad = 3 * bandwidth
    counts, edges = np.histogram(values, bins=bins, range=(lo - pad, hi + pad))
    width = edges[1] - edges[0]
    pdf = ndimage.gaussian_filter1d(counts.astype(np.float64), bandwidth / width, mode="constant")
    return 0.5 * (edges[:-1] + edges[1:]), pdf / (pdf.sum() * width)


def tissue_mode(values: np.ndarray, modality: str = "flair", tail_percentile: float = 96.0) -> float:
    """The intensity of the tissue peak of `values` (brain voxels) for `modality` (see the module docstring)."""
    kind = MODES[modality.lower()]
    if kind == "last":
        values = values[values <= np.percentile(values, tail_percentile)]
    grid, pdf = density(values)
    if kind == "largest":
        i = int(np.argmax(pdf))
    else:
        maxima = signal.argrelmax(pdf)[0]
        i = int(maxima[-1] if kind == "last" else maxima[0]) if len(maxima) else int(np.argmax(pdf))
    if 0 < i < len(pdf) - 1:  # parabolic refinement between grid points
        a, b, c = pdf[i - 1], pdf[i], pdf[i + 1]
        denom = a - 2 * b + c
        offset = 0.5 * (a - c) / denom if denom != 0 else 0.0
        return float(grid[i] + offset * (grid[1] - grid[0]))
    return float(grid[i])


def kde_normalise(
    image: np.ndarray, mask: np.ndarray, peak_value: float = 1.0, modality: str = "flair", max_voxels: int = 500_000
) -> KDEResult:
    """Scale `image` so the tissue mode of its `mask` voxels lands at `peak_value`.

    At most `max_voxels` brain voxels (a fixed, evenly spaced subset) enter the density: enough for a smooth
    density of a 1 mm brain, and it bounds the time.
    """
    values = image[np.asarray(mask, bool)].astype(np.float64)
    if values.size == 0:
        raise ValueError("empty brain mask")
    if values.size > max_voxels:
        values = values[:: int(np.ceil(values.size / max_voxels))]
    mode = tissue_mode(values, modality)
    if not np.isfinite(mode) or mode <= 0:
        raise ValueError(f"tissue mode {mode:g} is not positive; cannot scale")
    scaled = (image.astype(np.float64) / mode * peak_value).astype(np.float32)
    return KDEResult(image=scaled, peak_before=mode, peak_after=tissue_mode(values / mode * peak_value, modality))
