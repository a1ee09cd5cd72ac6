"""Quality control of the stage: the mask on three orthogonal views per subject, and the cohort table/figure.

A brain mask is wrong in ways a number hides (a cut-off cerebellum, a mask that leaks into the neck), so each
subject gets a picture; the cohort table then shows the outliers (brain volume, lesion voxels outside the
mask, N4 field range, KDE peak before/after) that :func:`implausible` turns into rejections.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from slimdiff.io import atomic_path

COLUMNS = [
    "subject",
    "brain_volume_ml",
    "lesion_voxels",
    "lesion_inside_mask",
    "n4_field_min",
    "n4_field_max",
    "kde_peak_before",
    "kde_peak_after",
    "status",
    "reason",
]


def _views(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Sagittal, coronal, axial slices through `centre` of a RAS volume, rotated for display (up = S or A)."""
    i, j, k = centre
    return [np.rot90(volume[i, :, :]), np.rot90(volume[:, j, :]), np.rot90(volume[:, :, k])]


def contour_figure(image, mask, path: str | Path, title: str = "", lesion=None, output=None) -> None:
    """The brain-mask contour (and the lesion's, if given) over `image` on three orthogonal views.

    `image` should be the head as acquired (reoriented, nothing removed): only there can a reader see brain the
    mask missed or skull it kept. `output`, if given, adds a second row: what the cache will read (stripped,
    bias-corrected, normalised), where a left-over bias or a bright rim shows.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centre = (
        tuple(int(round(c)) for c in np.argwhere(mask).mean(0)) if mask.any() else tuple(s // 2 for s in mask.shape)
    )
    rows = [("head as acquired", image)] + ([("preprocessed", output)] if output is not None else [])
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 3.2 * len(rows)), squeeze=False)
    for (label, volume), row_axes in zip(rows, axes, strict=True):
        vmax = float(np.percentile(volume[mask], 99.5)) if mask.any() else float(volume.max() or 1.0)
        for ax, img, msk, les, name in zip(
            row_axes,
            _views(volume, centre),
            _views(mask.astype(np.float32), centre),
            _views(lesion.astype(np.float32), centre) if lesion is not None else [None] * 3,
            ("sagittal", "coronal", "axial"),
            strict=True,
        ):
            ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, aspect="equal")
            if msk.any() and msk.min() < 1:
                ax.contour(msk, levels=[0.5], colors="lime", linewidths=0.8)
            if les is not None and les.any():
                ax.contour(les, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_title(f"{label}: {name}" if len(rows) > 1 else name, fontsize=8)
            ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


def row(sidecar: dict) -> dict:
    """The cohort-table row of one subject's sidecar."""
    out = {"subject": sidecar["subject"], **{k: sidecar.get("qc", {}).get(k) for k in COLUMNS[1:8]}}
    rejected = sidecar.get("rejected")
    out.update(status="rejected" if rejected else "ok", reason=rejected["problem"] if rejected else "")
    return out


def implausible(r: dict, qc_cfg: dict) -> str | None:
    """Why a subject's result is implausible under `preprocess.qc`, or None."""
    if r["status"] != "ok":
        return r["reason"]
    lo, hi = qc_cfg["brain_volume_ml"]
    vol = r["brain_volume_ml"]
    if not lo <= vol <= hi:
        return f"brain volume {vol:.0f} ml outside the plausible range [{lo}, {hi}] ml (preprocess.qc.brain_volume_ml)"
    inside = r.get("lesion_inside_mask")
    if inside is not None and not (isinstance(inside, float) and math.isnan(inside)):
        outside = 1.0 - float(inside)
        if outside > qc_cfg["max_lesion_outside_mask"]:
            return (
                f"{outside:.0%} of the lesion ROI lies outside the brain mask "
                f"(> preprocess.qc.max_lesion_outside_mask {qc_cfg['max_lesion_outside_mask']})"
            )
    return None


def cohort_figure(table: pd.DataFrame, path: str | Path) -> None:
    """Four panels: brain volume, lesion share inside the mask, N4 field range, KDE peak before/after."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    x = np.arange(len(table))
    colours = np.where(table["status"] == "ok", "tab:blue", "tab:red")
    axes[0].bar(x, table["brain_volume_ml"].astype(float), color=colours)
    axes[0].set_title("brain volume (ml)")
    axes[1].bar(x, table["lesion_inside_mask"].astype(float), color=colours)
    axes[1].set_title("share of lesion voxels inside mask")
    axes[1].set_ylim(0, 1.05)
    lo, hi = table["n4_field_min"].astype(float), table["n4_field_max"].astype(float)
    axes[2].vlines(x, lo, hi, color=colours)
    axes[2].set_title("N4 field range (min-max in mask)")
    axes[3].scatter(x, table["kde_peak_before"].astype(float), label="before", s=12)
    ax_after = axes[3].twinx()
    ax_after.scatter(x, table["kde_peak_after"].astype(float), label="after", s=12, color="tab:orange")
    axes[3].set_title("KDE peak: before (blue, left), after (orange, right)")
    for ax in axes:
        ax.set_xticks(x, table["subject"], rotation=90, fontsize=6)
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
