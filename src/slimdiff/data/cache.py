"""The slice cache: raw volumes -> a few memory-mappable arrays plus one manifest.

Layout of CACHE_DIR::

    images.npy   float32 (N, H, W) FLAIR slices in [-1, 1]          (np.load(..., mmap_mode="r"))
    masks.npy    int8    (N, H, W) lesion masks in {-1, +1}
    index.csv    one row per slice: row, subject, group, z, z_bin, class, token, lesion_area_px,
                 brain_fraction, split (test | trainval), val_fold
    splits.json  test subjects and k folds (see splits.py)
    rejected.csv subjects skipped with on_bad_subject: skip (header only when none)
    cohort.csv   every subject discovered: included / excluded (data.cohort, include_controls) / rejected, why,
                 its split and acquisition geometry (see cohort.py)
    cache_meta.json  config, versions, z-range, counts, array shapes; written LAST

A cache is complete only when cache_meta.json exists and agrees with the arrays; the builder deletes an
old cache_meta.json first and writes every file through a temporary name, so a killed build never leaves
a cache that looks finished.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from slimdiff import provenance
from slimdiff.data.cohort import finish_table, select_cohort
from slimdiff.data.ingest import DataError, Subject, discover, load_volume
from slimdiff.data.slices import SliceStats, resolve_z_range, select_slices, token, z_bin, z_bin_centre
from slimdiff.data.splits import make_splits, subject_split_columns
from slimdiff.errors import SlimdiffInputError
from slimdiff.io import read_json, scratch_dir, write_json, write_text

log = logging.getLogger(__name__)

ARRAY_FILES = ("images.npy", "masks.npy")
INDEX_COLUMNS = [
    "row",
    "subject",
    "group",
    "z",
    "z_bin",
    "class",
    "token",
    "lesion_area_px",
    "brain_fraction",
    "split",
    "val_fold",
]
REJECTED_COLUMNS = ["subject", "file", "problem"]


class CacheError(SlimdiffInputError):
    """A cache directory that is missing, incomplete or inconsistent."""


@dataclass
class _Staged:
    subject: Subject
    path: Path
    stats: SliceStats


def _stage_subject(args: tuple[Subject, dict, dict, str]):
    """Worker: read, check and preprocess one subject; save its volumes to the staging folder.

    Returns (subject, staged path, stats, problem) where problem is None or (file, what is wrong).
    """
    from slimdiff.data.preprocess import preprocess_volume  # MONAI: only building a cache needs it

    subject, ingest, cache_cfg, staging = args
    try:
        vol = load_volume(subject, ingest)
        image, mask = preprocess_volume(
            vol.image, vol.affine, vol.mask, cache_cfg["spacing"], cache_cfg["roi_size"], cache_cfg["percentiles"]
        )
        if subject.is_patient and not mask.any():
            raise DataError(subject.mask, "lesion lies outside the cropped field of view (roi_size)")
    except DataError as exc:
        return subject, None, None, (exc.path, exc.problem)
    path = Path(staging) / f"{subject.subject_id}.npz"
    np.savez(path, image=image, mask=mask)
    return subject, path, SliceStats.from_volume(image, mask, cache_cfg["brain_threshold"]), None


def build_cache(raw_dir: str | Path, out_dir: str | Path, data_cfg: dict, threads: int = 1) -> dict:
    """Build the slice cache from a raw cohort. `data_cfg` is the validated `data` section of the config."""
    out_dir = Path(out_dir)
    ingest, cache_cfg = data_cfg["ingest"], data_cfg["cache"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cache_meta.json").unlink(missing_ok=True)

    discovered = discover(raw_dir, data_cfg["layout"], ingest)
    if not ingest["include_controls"] and not any(s.is_patient for s in discovered):
        raise DataError(raw_dir, "no patients found, and controls are excluded (data.ingest.include_controls)")
    subjects, cohort = select_cohort(discovered, Path(raw_dir), data_cfg)
    if not subjects:
        raise DataError(raw_dir, "the cohort selection (data.cohort) excludes every subject; see the warnings above")

    with scratch_dir(out_dir / "staging") as staging:
        staged, rejected = _stage_all(subjects, ingest, cache_cfg, staging, threads)
        if not staged:
            raise DataError(raw_dir, "every subject was rejected; see the warnings above")
        return _write_cache(staged, rejected, out_dir, data_cfg, raw_dir, cohort)


def _stage_all(subjects, ingest, cache_cfg, staging, threads):
    jobs = [(s, ingest, cache_cfg, str(staging)) for s in subjects]
    workers = max(1, min(threads, len(jobs), os.cpu_count() or 1))
    staged, rejected = [], []
    pool = ProcessPoolExecutor(workers) if workers > 1 else None
    try:
        results = pool.map(_stage_subject, jobs) if pool else map(_stage_subject, jobs)
        for subject, path, stats, problem in tqdm(results, total=len(jobs), desc="subjects", unit="subj"):
            if problem is None:
                staged.append(_Staged(subject, path, stats))
            elif ingest["on_bad_subject"] == "stop":
                raise DataError(*problem, subject=subject.subject_id)
            else:
                log.warning("skipping subject %s: %s: %s", subject.subject_id, *problem)
                rejected.append({"subject": subject.subject_id, "file": problem[0], "problem": problem[1]})
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    return staged, rejected


def _write_cache(
    staged: list[_Staged], rejected: list[dict], out_dir: Path, data_cfg: dict, raw_dir, cohort: pd.DataFrame
) -> dict:
    cache_cfg = data_cfg["cache"]
    n_bins = cache_cfg["z_bins"]
    z_range, z_info = _resolve_z_range(staged, cache_cfg)
    selected = [(s, select_slices(s.stats, z_range, cache_cfg)) for s in staged]
    n_rows = sum(len(z) for _, z in selected)
    if n_rows == 0:
        raise CacheError(f"no slice passed the selection in z_range {list(z_range)}; check brain_min_fraction")
    height, width = cache_cfg["roi_size"][:2]

    with scratch_dir(out_dir / "arrays") as tmp:
        index = _write_slice_arrays(selected, tmp, (n_rows, height, width), z_range, n_bins)
        index, splits = _with_splits(index, staged, data_cfg["splits"])
        for name in ARRAY_FILES:
            os.replace(tmp / name, out_dir / name)
    index_text = index.to_csv(index=False)
    write_text(out_dir / "index.csv", index_text)
    write_json(out_dir / "splits.json", splits)
    write_text(out_dir / "rejected.csv", pd.DataFrame(rejected, columns=REJECTED_COLUMNS).to_csv(index=False))
    cohort = finish_table(cohort, rejected, splits)
    write_text(out_dir / "cohort.csv", cohort.to_csv(index=False))

    meta = {
        "format_version": 1,
        "created": provenance.timestamp(),
        "raw_dir": str(raw_dir),
        "config": data_cfg,
        "versions": provenance.versions(),
        "z_range": list(z_range),
        "z_range_info": z_info,
        "z_bins": n_bins,
        "z_bin_centres": z_bin_centre(np.arange(n_bins), z_range, n_bins).tolist(),
        "slice_shape": [height, width],
        "arrays": {
            "images.npy": {"dtype": "float32", "shape": [n_rows, height, width], "range": [-1.0, 1.0]},
            "masks.npy": {"dtype": "int8", "shape": [n_rows, height, width], "values": [-1, 1]},
        },
        "index_sha256": hashlib.sha256(index_text.encode()).hexdigest(),
        "counts": _counts(index, splits, rejected),
        "cohort": {k: int(v) for k, v in cohort["status"].value_counts().items()},
    }
    write_json(out_dir / "cache_meta.json", meta)  # last: marks the cache complete
    log.info("cache: %d slices from %d subjects -> %s", n_rows, index["subject"].nunique(), out_dir)
    return meta


def _resolve_z_range(staged: list[_Staged], cache_cfg: dict):
    """(z_range, how it was chosen): the configured range, or one around the patients' lesions."""
    extents = [e for s in staged if s.subject.is_patient and (e := s.stats.lesion_z_extent())]
    return resolve_z_range(
        cache_cfg["z_range"], extents, cache_cfg["auto_z_range_offset"], cache_cfg["roi_size"][2], cache_cfg["z_bins"]
    )


def _write_slice_arrays(selected, folder: Path, shape: tuple[int, int, int], z_range, n_bins: int) -> pd.DataFrame:
    """images.npy and masks.npy in `folder`, one row per selected slice; returns their index (no split columns)."""
    images = np.lib.format.open_memmap(folder / "images.npy", "w+", np.float32, shape)
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.int8, shape)
    rows = []
    for s, zs in tqdm(selected, desc="slices", unit="subj"):
        with np.load(s.path) as vol:
            image, mask = vol["image"], vol["mask"]
            for z in zs:
                r = len(rows)
                images[r] = image[:, :, z]
                masks[r] = np.where(mask[:, :, z], 1, -1)
                rows.append(_index_row(r, s, z, z_range, n_bins))
    images.flush()
    masks.flush()
    del images, masks
    return pd.DataFrame(rows)


def _index_row(r: int, s: _Staged, z: int, z_range, n_bins: int) -> dict:
    area = int(s.stats.lesion_area_px[z])
    cls = int(area > 0)
    b = int(z_bin(z, z_range, n_bins))
    return {
        "row": r,
        "subject": s.subject.subject_id,
        "group": s.subject.group,
        "z": int(z),
        "z_bin": b,
        "class": cls,
        "token": int(token(b, cls, n_bins)),
        "lesion_area_px": area,
        "brain_fraction": round(float(s.stats.brain_fraction[z]), 4),
    }


def _with_splits(index: pd.DataFrame, staged: list[_Staged], splits_cfg: dict) -> tuple[pd.DataFrame, dict]:
    """The subjects' test/fold assignment (predefined test subjects first), and the index with its columns."""
    subjects = index.groupby("subject").agg(group=("group", "first"), burden=("class", "mean"))
    predefined = sorted({s.subject.subject_id for s in staged if s.subject.predefined_split == "test"})
    predefined += [t for t in splits_cfg["test_subjects"] if t not in predefined]
    splits = make_splits(subjects, splits_cfg, predefined)
    index = pd.concat([index, subject_split_columns(splits, index["subject"])], axis=1)[INDEX_COLUMNS]
    return index, splits


def _counts(index: pd.DataFrame, splits: dict, rejected: list[dict]) -> dict:
    per_split = index.groupby(["split", "class"]).size()
    return {
        "subjects": int(index["subject"].nunique()),
        "patients": int(index.loc[index["group"] == "fcd", "subject"].nunique()),
        "controls": int(index.loc[index["group"] == "hc", "subject"].nunique()),
        "slices": len(index),
        "lesion_slices": int(index["class"].sum()),
        "slices_by_split_and_class": {f"{s}/class{c}": int(n) for (s, c), n in per_split.items()},
        "test_subjects": len(splits["test"]),
        "folds": [{"train": len(f["train"]), "val": len(f["val"])} for f in splits["folds"]],
        "rejected_subjects": len(rejected),
    }


@dataclass
class Cache:
    images: np.ndarray  # memory-mapped (N, H, W) float32
    masks: np.ndarray  # memory-mapped (N, H, W) int8
    index: pd.DataFrame
    splits: dict
    meta: dict
    path: Path


def load_cache(cache_dir: str | Path) -> Cache:
    """Open a finished cache; refuse one that is incomplete or whose files disagree with its metadata."""
    cache_dir = Path(cache_dir)
    meta_path = cache_dir / "cache_meta.json"
    if not meta_path.exists():
        raise CacheError(f"{meta_path}: missing, so {cache_dir} is not a complete cache (build it with slimdiff-cache)")
    meta = read_json(meta_path)
    if not isinstance(meta, dict) or not {"arrays", "index_sha256"} <= set(meta):
        raise CacheError(f"{meta_path}: not a slimdiff cache's metadata (no 'arrays' or 'index_sha256'; rebuild it)")
    for name in ("index.csv", "splits.json", *meta["arrays"]):
        if not (cache_dir / name).is_file():
            raise CacheError(f"{cache_dir / name}: missing, so {cache_dir} is not a complete cache (rebuild it)")
    index_path = cache_dir / "index.csv"
    index_text = index_path.read_text()
    if hashlib.sha256(index_text.encode()).hexdigest() != meta["index_sha256"]:
        raise CacheError(f"{index_path}: does not match cache_meta.json (changed after the build?)")
    index = pd.read_csv(index_path)
    arrays = {}
    for name, spec in meta["arrays"].items():
        try:
            arr = np.load(cache_dir / name, mmap_mode="r")
        except (OSError, ValueError, EOFError) as exc:
            raise CacheError(f"{cache_dir / name}: cannot read it as a .npy array ({exc}); rebuild the cache") from None
        if list(arr.shape) != spec["shape"] or str(arr.dtype) != spec["dtype"]:
            raise CacheError(f"{cache_dir / name}: shape/dtype {arr.shape}/{arr.dtype} disagree with cache_meta.json")
        arrays[name] = arr
    splits = read_json(cache_dir / "splits.json")
    return Cache(arrays["images.npy"], arrays["masks.npy"], index, splits, meta, cache_dir)
