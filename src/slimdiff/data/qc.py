"""QC figures of a slice cache, for a person to eyeball before training on it.

* ``zbin_montage.png``: one row per z-bin, example slices (lesion slices first, mask contour in red);
* ``cohort_stats.png``: slices per z-bin and class, lesion-area histogram, subjects per split and fold;
* ``cohort_stats.csv``: the per-z-bin counts behind the first panel;
* ``cohort.png``: slice spacing per subject (included by split, excluded, rejected) and subjects per split and
  exclusion criterion; ``cohort.csv``: the cache's per-subject cohort table; ``cohort_counts.csv``: the counts.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from slimdiff.data.cache import CacheError, load_cache
from slimdiff.data.splits import fold_membership
from slimdiff.io import atomic_path, write_text

log = logging.getLogger(__name__)
CLASS_COLOURS = {0: "#4c72b0", 1: "#dd8452"}


def _pick_examples(index: pd.DataFrame, n: int, rng: np.random.Generator) -> list[int]:
    """Up to n rows of one z-bin: half lesion slices when there are any, the rest lesion-free."""
    lesion = index.loc[index["class"] == 1, "row"].to_numpy()
    clean = index.loc[index["class"] == 0, "row"].to_numpy()
    n_lesion = min(len(lesion), max(n // 2, n - len(clean)))
    picks = list(rng.choice(lesion, n_lesion, replace=False)) if n_lesion else []
    n_clean = min(len(clean), n - n_lesion)
    picks += list(rng.choice(clean, n_clean, replace=False)) if n_clean else []
    return [int(p) for p in picks]


def zbin_montage(cache, out_png: str | Path, examples_per_zbin: int = 8, seed: int = 0) -> None:
    n_bins = cache.meta["z_bins"]
    h, w = cache.meta["slice_shape"]
    rng = np.random.default_rng(seed)
    image_tiles = np.full((n_bins * h, examples_per_zbin * w), -1.0, np.float32)
    mask_tiles = np.zeros_like(image_tiles)
    for b in range(n_bins):
        rows = _pick_examples(cache.index[cache.index["z_bin"] == b], examples_per_zbin, rng)
        for j, r in enumerate(rows):
            # Display with anterior up and the patient's right on the left (radiological convention).
            image_tiles[b * h : (b + 1) * h, j * w : (j + 1) * w] = np.rot90(cache.images[r])
            mask_tiles[b * h : (b + 1) * h, j * w : (j + 1) * w] = np.rot90(cache.masks[r] > 0)
    inch = max(0.35, 1.6 * h / 160)
    fig = Figure(figsize=(examples_per_zbin * inch + 1.2, n_bins * inch + 0.6))
    ax = fig.subplots()
    ax.imshow(image_tiles, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    if mask_tiles.any():
        ax.contour(mask_tiles, levels=[0.5], colors="red", linewidths=0.6)
    z_lo, z_hi = cache.meta["z_range"]
    labels = [f"bin {b} (z~{c})" for b, c in enumerate(cache.meta["z_bin_centres"])]
    ax.set_yticks(np.arange(n_bins) * h + h / 2, labels)
    ax.set_xticks([])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(f"Slice cache by z-bin (z {z_lo}-{z_hi}); lesion slices first, mask contour in red", fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def cohort_stats(cache, out_png: str | Path, out_csv: str | Path) -> pd.DataFrame:
    index = cache.index
    n_bins = cache.meta["z_bins"]
    counts = index.groupby(["z_bin", "class"]).size().unstack(fill_value=0).reindex(range(n_bins), fill_value=0)
    counts = counts.reindex(columns=[0, 1], fill_value=0)
    counts.columns = ["class0_slices", "class1_slices"]
    counts.index.name = "z_bin"
    write_text(out_csv, counts.to_csv())

    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    ax.bar(counts.index, counts["class0_slices"], color=CLASS_COLOURS[0], label="class 0 (no lesion)")
    ax.bar(
        counts.index,
        counts["class1_slices"],
        bottom=counts["class0_slices"],
        color=CLASS_COLOURS[1],
        label="class 1 (lesion)",
    )
    ax.set(xlabel="z-bin", ylabel="slices", title="Slices per z-bin and class")
    ax.legend(fontsize=8)

    ax = axes[1]
    areas = index.loc[index["class"] == 1, "lesion_area_px"]
    spacing = cache.meta["config"]["cache"]["spacing"]
    if len(areas):
        ax.hist(areas * spacing[0] * spacing[1], bins=min(30, max(5, len(areas) // 3)), color=CLASS_COLOURS[1])
    ax.set(xlabel="lesion area per slice (mm$^2$)", ylabel="slices", title=f"Lesion area ({len(areas)} slices)")

    ax = axes[2]
    labels, train, val, test = [], [], [], []
    for f in cache.splits["folds"]:
        member = fold_membership(index, f["fold"])
        per = index.assign(m=member).groupby("m")["subject"].nunique()
        labels.append(f"fold {f['fold']}")
        train.append(per.get("train", 0))
        val.append(per.get("val", 0))
        test.append(per.get("test", 0))
    x = np.arange(len(labels))
    ax.bar(x, train, label="train", color="#55a868")
    ax.bar(x, val, bottom=train, label="val", color="#c44e52")
    ax.bar(x, test, bottom=np.add(train, val), label="test (fixed)", color="#8172b2")
    ax.set_xticks(x, labels)
    ax.set(ylabel="subjects", title="Subjects per split")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return counts


COHORT_COLOURS = {"test": "#8172b2", "trainval": "#55a868", "excluded": "#c44e52", "rejected": "#937860"}


def _category(row) -> str:
    return row["split"] if row["status"] == "included" else row["status"]


def _criterion(row) -> str:
    """What put a subject out: the config keys its reason names, or `bad input` for a rejected subject."""
    if row["status"] == "rejected":
        return "bad input (on_bad_subject: skip)"
    if row["status"] != "excluded":
        return ""
    return ", ".join(dict.fromkeys(re.findall(r"\((data\.[\w.]+)", row["reason"]))) or row["reason"]


def cohort_counts(cohort: pd.DataFrame) -> pd.DataFrame:
    """Subjects per status, split, group and exclusion criterion."""
    table = cohort.assign(criterion=cohort.apply(_criterion, axis=1))
    return (
        table.groupby(["status", "split", "group", "criterion"], dropna=False).size().rename("subjects").reset_index()
    )


def cohort_report(cache, out_png: str | Path, out_csv: str | Path, out_counts: str | Path) -> pd.DataFrame:
    """The cohort behind the cache: who is in (by split), who is out and why, and each FLAIR's slice spacing."""
    path = cache.path / "cohort.csv"
    if not path.is_file():
        raise CacheError(f"{path}: missing; the cache predates the cohort table, rebuild it")
    cohort = pd.read_csv(path, dtype=str, keep_default_na=False)
    write_text(out_csv, cohort.to_csv(index=False))
    counts = cohort_counts(cohort)
    write_text(out_counts, counts.to_csv(index=False))

    cohort = cohort.assign(
        category=cohort.apply(_category, axis=1),
        spacing=pd.to_numeric(cohort["slice_spacing_mm"], errors="coerce"),
    )
    order = {c: i for i, c in enumerate(COHORT_COLOURS)}
    cohort = cohort.sort_values(
        ["category", "spacing", "subject"], key=lambda c: c.map(order) if c.name == "category" else c
    )
    fig = Figure(figsize=(13, 4))
    ax, bx = fig.subplots(1, 2, width_ratios=[2.2, 1])
    x = np.arange(len(cohort))
    control = (cohort["group"] == "hc").to_numpy()
    for cat, colour in COHORT_COLOURS.items():
        for group, marker, mine in (("patients", "o", ~control), ("controls", "x", control)):
            hit = (cohort["category"] == cat).to_numpy() & mine
            if hit.any():
                label = f"{cat}, {group} ({int(hit.sum())})"
                ax.scatter(x[hit], cohort["spacing"][hit], s=12, color=colour, marker=marker, label=label)
    limit = cache.meta["config"].get("cohort", {}).get("max_slice_spacing_mm")
    if limit is not None:
        ax.axhline(limit, color="grey", linestyle="--", linewidth=0.8, label=f"max_slice_spacing_mm {limit:g}")
    ax.set(xlabel="subject (by category, then spacing)", ylabel="slice spacing (mm)", title="FLAIR slice spacing")
    ax.set_xticks([])
    ax.legend(fontsize=8)

    labels, values, colours = [], [], []
    for cat, colour in COHORT_COLOURS.items():
        part = cohort[cohort["category"] == cat]
        keys = part.apply(_criterion, axis=1) if cat in ("excluded", "rejected") else part["group"]
        for key, n in keys.value_counts().sort_index().items():
            labels.append(f"{cat}: {key}")
            values.append(int(n))
            colours.append(colour)
    y = np.arange(len(labels))
    bx.barh(y, values, color=colours)
    bx.set_yticks(y, labels, fontsize=7)
    bx.invert_yaxis()
    for yi, v in zip(y, values, strict=True):
        bx.text(v, yi, f" {v}", va="center", fontsize=7)
    bx.set(xlabel="subjects", title="Subjects per split / exclusion criterion")
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return counts


def write_qc(cache_dir: str | Path, qc_dir: str | Path, examples_per_zbin: int = 8, seed: int = 0) -> None:
    cache = load_cache(cache_dir)
    qc_dir = Path(qc_dir)
    zbin_montage(cache, qc_dir / "zbin_montage.png", examples_per_zbin, seed)
    cohort_stats(cache, qc_dir / "cohort_stats.png", qc_dir / "cohort_stats.csv")
    cohort_report(cache, qc_dir / "cohort.png", qc_dir / "cohort.csv", qc_dir / "cohort_counts.csv")
    log.info("QC of %s (%d slices) written to %s", cache_dir, len(cache.index), qc_dir)
