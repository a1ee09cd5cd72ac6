"""Generated samples on disk: one compressed array file per z-bin plus a manifest, and a PNG grid per run.

zbinNN.npz: images, masks (N,H,W) float16 by default, continuous in [-1, 1] (masks are binarised only
downstream, at tau = 0 by default), and per-sample z_bin, class, token, k, seed; plus a 0-d `meta` JSON
string (run, replica, seed, sampler, model file, versions). zbinNN.csv: one row per sample.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from slimdiff import provenance
from slimdiff.errors import MissingInputError, OutputExistsError, SlimdiffInputError
from slimdiff.io import atomic_path, write_text

ARRAY_KEYS = ("z_bin", "class", "token", "k", "seed")


class SampleFileError(SlimdiffInputError):
    """A zbinNN.npz that cannot be read as generated samples; the message names it."""


# What makes two sample files the same generation: rewriting one of them gives the same samples (a rerun).
IDENTITY_KEYS = ("run", "fold", "replica", "seed", "sampler", "model_sha256", "dtype", "compute_dtype")


def check_same_generation(npz_path: Path, meta: dict, keys=IDENTITY_KEYS) -> None:
    """A sample file is rewritten only by a rerun of the same generation, never replaced by other samples."""
    meta = json.loads(json.dumps(meta))  # as the file would hold it (tuples -> lists)
    try:
        with np.load(npz_path) as data:
            old = json.loads(str(data["meta"]))
    except Exception:  # not a sample file at all: numpy and zipfile raise many types
        old = {}
    differ = [k for k in keys if old.get(k) != meta.get(k)]
    if differ:
        raise OutputExistsError(
            f"{npz_path}: holds samples of another generation (they differ in {', '.join(differ)}) and is not "
            "written over; write to another folder (one per replica), or delete the old samples first"
        )


def write_samples(npz_path: str | Path, result: dict, meta: dict, dtype: str = "float16", rows=None) -> None:
    """Write the samples `rows` (default all) of a generate_samples result, atomically."""
    rows = np.arange(len(result["seed"])) if rows is None else np.asarray(rows)
    npz_path = Path(npz_path)
    meta = {**meta, "dtype": dtype, "versions": provenance.versions(), "created": provenance.timestamp()}
    if npz_path.exists():
        check_same_generation(npz_path, meta)
    arrays = {
        "images": result["images"][rows].astype(dtype),
        "masks": result["masks"][rows].astype(dtype),
        **{k: result[k][rows] for k in ARRAY_KEYS},
        "meta": np.array(json.dumps(meta)),
    }
    with atomic_path(npz_path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    manifest = pd.DataFrame({k: result[k][rows] for k in ARRAY_KEYS})
    manifest.insert(0, "index", np.arange(len(rows)))
    manifest["mask_area_px_tau0"] = (result["masks"][rows] > 0).sum(axis=(1, 2))
    write_text(npz_path.with_suffix(".csv"), manifest.to_csv(index=False))


def find_sample_files(items: list[str | Path]) -> list[Path]:
    """zbin*.npz files named directly or found under the given directories; an empty result is an error."""
    files: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            files += sorted(item.rglob("zbin*.npz"))
        elif item.is_file():
            files.append(item)
        else:
            raise MissingInputError(f"{item}: no such file or directory")
    if not files:
        raise MissingInputError(f"no zbin*.npz sample files under {', '.join(map(str, items))}")
    return files


def read_samples(npz_path: str | Path) -> dict:
    try:
        with np.load(npz_path) as data:
            out = {k: data[k] for k in data.files if k != "meta"}
            out["meta"] = json.loads(str(data["meta"]))
    except FileNotFoundError:
        raise MissingInputError(f"{npz_path}: no such sample file") from None
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise SampleFileError(f"{npz_path}: not a readable sample file ({type(exc).__name__}: {exc})") from None
    return out


def _first_samples(path: Path, max_columns: int) -> tuple[int, np.ndarray, np.ndarray]:
    s = read_samples(path)
    order = np.argsort(-s["class"], kind="stable")[:max_columns]  # lesion class first
    return (int(s["z_bin"][0]) if len(s["z_bin"]) else -1), s["images"][order], s["masks"][order]


def _draw_rows(rows: list[tuple[str, np.ndarray, np.ndarray]], out_png, max_columns: int, title: str) -> None:
    """One row of samples per entry, lesion-mask contour (tau = 0) in red."""
    from matplotlib.figure import Figure  # here: the metrics jobs read samples through this module, never draw

    h, w = next((r[1].shape[1:] for r in rows if len(r[1])), (32, 32))
    canvas = np.full((len(rows) * h, max_columns * w), -1.0, np.float32)
    contour = np.zeros_like(canvas)
    for i, (_, images, masks) in enumerate(rows):
        for j in range(len(images)):
            canvas[i * h : (i + 1) * h, j * w : (j + 1) * w] = np.rot90(images[j].astype(np.float32))
            contour[i * h : (i + 1) * h, j * w : (j + 1) * w] = np.rot90(masks[j].astype(np.float32) > 0)
    inch = max(0.35, 1.6 * h / 160)
    fig = Figure(figsize=(max_columns * inch + 2.0, max(1, len(rows)) * inch + 0.6))
    ax = fig.subplots()
    ax.imshow(canvas, cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
    if contour.any():
        ax.contour(contour, levels=[0.5], colors="red", linewidths=0.6)
    ax.set_yticks(np.arange(len(rows)) * h + h / 2, [r[0] for r in rows])
    ax.set_xticks([])
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def write_grid(npz_paths: list[str | Path], out_png: str | Path, max_columns: int = 8, title: str = "") -> None:
    """Rows = z-bins, columns = samples (lesion class first), lesion-mask contour (tau = 0) in red."""
    rows = sorted((_first_samples(Path(p), max_columns) for p in npz_paths), key=lambda r: r[0])
    title = title or "Generated samples: rows z-bins, lesion class first, mask contour (tau=0) red"
    _draw_rows([(f"bin {z}", images, masks) for z, images, masks in rows], out_png, max_columns, title)


def write_zbin_panel(npz_by_run: dict[str, str | Path], out_png: str | Path, max_columns: int = 8) -> None:
    """One z-bin across runs: rows = runs, columns = samples (lesion class first), so runs compare at a glance."""
    rows, z = [], -1
    for label, path in npz_by_run.items():
        z, images, masks = _first_samples(Path(path), max_columns)
        rows.append((label, images, masks))
    _draw_rows(rows, out_png, max_columns, f"z-bin {z}: one row per run, lesion class first, mask contour red")
