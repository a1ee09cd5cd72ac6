"""Axial slice selection, local z-binning and conditioning tokens (as the upstream cache does).

z-bins are *local* to the cached z-range: with R = z_max - z_min + 1 slices and n bins,
    z_bin(z) = clamp(floor((z - z_min) / R * n), 0, n - 1),
and the token that conditions the model is z_bin + n * class (class 1 = the slice has lesion pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slimdiff.config import ConfigError


def z_bin(z: int | np.ndarray, z_range: tuple[int, int], n_bins: int) -> np.ndarray:
    z = np.asarray(z)
    z_min, z_max = z_range
    if np.any(z < z_min) or np.any(z > z_max):
        raise ValueError(f"z {z} outside the cached range [{z_min}, {z_max}]")
    size = z_max - z_min + 1
    return np.clip(((z - z_min) * n_bins) // size, 0, n_bins - 1)


def z_bin_centre(b: int | np.ndarray, z_range: tuple[int, int], n_bins: int) -> np.ndarray:
    """Slice index at the centre of bin b (the inverse used by the z-position embedding)."""
    z_min, z_max = z_range
    size = z_max - z_min + 1
    centre = z_min + np.floor((np.asarray(b) + 0.5) / n_bins * size).astype(int)
    return np.clip(centre, z_min, z_max)


def token(z_bins: np.ndarray, classes: np.ndarray, n_bins: int) -> np.ndarray:
    return np.asarray(z_bins) + n_bins * np.asarray(classes)


@dataclass(frozen=True)
class SliceStats:
    """Per-axial-slice numbers of one preprocessed subject, enough to select slices without the data."""

    brain_fraction: np.ndarray  # (Z,) share of pixels above the brain threshold
    lesion_area_px: np.ndarray  # (Z,) lesion pixels per slice

    @classmethod
    def from_volume(cls, image: np.ndarray, mask: np.ndarray, brain_threshold: float) -> SliceStats:
        return cls(
            brain_fraction=(image > brain_threshold).mean(axis=(0, 1)),
            lesion_area_px=mask.sum(axis=(0, 1)).astype(np.int64),
        )

    def lesion_z_extent(self) -> tuple[int, int] | None:
        zs = np.flatnonzero(self.lesion_area_px > 0)
        return (int(zs[0]), int(zs[-1])) if zs.size else None


def select_slices(stats: SliceStats, z_range: tuple[int, int], cache_cfg: dict) -> np.ndarray:
    """Indices z in the range that hold enough brain and are not tiny-lesion slices.

    Slices with a lesion smaller than `lesion_area_min_px` are dropped, not relabelled as class 0, as
    upstream does (so class 0 excludes tiny-lesion slices).
    """
    z = np.arange(z_range[0], z_range[1] + 1)
    keep = stats.brain_fraction[z] >= cache_cfg["brain_min_fraction"]
    area = stats.lesion_area_px[z]
    keep &= ~((area > 0) & (area < cache_cfg["lesion_area_min_px"]))
    return z[keep]


def resolve_z_range(
    configured, extents: list[tuple[int, int]], offset: int, depth: int, n_bins: int
) -> tuple[tuple[int, int], dict]:
    """The fixed range, or the lesion z-extent over all patients shrunk by `offset` on each side."""
    if configured == "auto":
        if not extents:
            raise ConfigError(
                "z_range 'auto' needs at least one patient with a lesion; set data.cache.z_range to [z_min, z_max]"
            )
        lo, hi = min(e[0] for e in extents), max(e[1] for e in extents)
        shrunk = (lo + offset, hi - offset)
        z_range = shrunk if shrunk[0] <= shrunk[1] else (lo, hi)
        info = {"mode": "auto", "lesion_extent": [lo, hi], "offset": offset, "shrunk": shrunk[0] <= shrunk[1]}
    else:
        z_range = (int(configured[0]), int(configured[1]))
        info = {"mode": "fixed"}
    if not 0 <= z_range[0] <= z_range[1] < depth:
        raise ConfigError(f"z_range {list(z_range)} must satisfy 0 <= z_min <= z_max < {depth} (roi_size z)")
    if n_bins > z_range[1] - z_range[0] + 1:
        raise ConfigError(
            f"z_bins={n_bins} exceeds the {z_range[1] - z_range[0] + 1} slices of z_range {list(z_range)}; "
            "lower data.cache.z_bins or widen the range"
        )
    return z_range, info
