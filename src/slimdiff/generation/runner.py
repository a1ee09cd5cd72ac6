"""Generate samples from a model.pt into a directory: one zbinNN.npz + .csv per z-bin, and grid.png."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from slimdiff.device import pick_device
from slimdiff.generation.outputs import check_same_generation, write_grid, write_samples
from slimdiff.generation.sampling import Condition, compute_dtype_for, generate_samples
from slimdiff.io import file_sha256
from slimdiff.model.factory import use_channels_last
from slimdiff.model.file import load_denoiser, weight_kind

log = logging.getLogger(__name__)


def generate_to_dir(
    model_path: str | Path,
    out_dir: str | Path,
    conditions: list[Condition],
    seed: int = 42,
    replica: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    dtype: str = "float16",
    sampler_overrides: dict | None = None,
    grid: bool = True,
    channels_last: bool = False,
    compute_dtype: str = "auto",
) -> list[Path]:
    """Sample `conditions` and write them per z-bin; `dtype` is the storage dtype of images and masks.

    The precision the network computes in (`compute_dtype`, generation.compute_dtype) is resolved from it and
    the device by sampling.compute_dtype_for; a z-bin file computed in another precision is not written over.
    """
    device = pick_device(device)
    net, diffusion, payload = load_denoiser(model_path, device)
    if channels_last:
        net = use_channels_last(net)
    out_dir = Path(out_dir)
    model_sha256 = file_sha256(model_path)
    known = {
        "run": payload["provenance"].get("run"),
        "fold": payload["data_info"].get("fold"),
        "replica": replica,
        "seed": seed,
        "model_sha256": model_sha256,
        "dtype": dtype,
        "compute_dtype": compute_dtype_for(dtype, device, compute_dtype),
    }
    _refuse_other_generations(out_dir, conditions, known)  # before sampling, not after hours of it
    compute_dtype = known["compute_dtype"]
    result = generate_samples(
        net,
        diffusion,
        payload,
        conditions,
        seed,
        replica,
        batch_size,
        device,
        compute_dtype=compute_dtype,
        **(sampler_overrides or {}),
    )
    meta = {
        "run": known["run"],
        "fold": known["fold"],
        "replica": replica,
        "seed": seed,
        "sampler": result["sampler"],
        "ema_weights": weight_kind(payload) == "ema",
        "model_file": str(model_path),
        "model_sha256": model_sha256,
        "z_bins": payload["data_info"]["z_bins"],
        "spacing_mm": payload["data_info"].get("spacing_mm"),
        "device": device,
        "compute_dtype": compute_dtype,
    }
    written = _write_per_zbin(out_dir, result, meta, dtype)
    if grid and written:
        write_grid(written, out_dir / "grid.png", title=f"{meta['run']} replica {replica}")
    log.info("wrote %d samples in %d z-bin files to %s", len(result["seed"]), len(written), out_dir)
    return written


def _refuse_other_generations(out_dir: Path, conditions: list[Condition], known: dict) -> None:
    """Every z-bin file this generation would write either is absent or holds this same generation."""
    for z in sorted({c.z_bin for c in conditions if c.n > 0}):
        path = out_dir / f"zbin{z:02d}.npz"
        if path.exists():
            check_same_generation(path, known, keys=list(known))


def _write_per_zbin(out_dir: Path, result: dict, meta: dict, dtype: str) -> list[Path]:
    """zbinNN.npz (+ .csv) for each z-bin in `result`, in z-bin order."""
    written = []
    for z in sorted(set(result["z_bin"].tolist())):
        path = out_dir / f"zbin{z:02d}.npz"
        write_samples(path, result, meta, dtype, rows=np.flatnonzero(result["z_bin"] == z))
        written.append(path)
    return written
