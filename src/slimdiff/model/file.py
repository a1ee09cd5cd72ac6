"""`model.pt`: the EMA weights plus everything needed to rebuild the network, loadable with weights_only=True.

Training writes it (save_model), generation reads it (read_model_file, load_denoiser): the format lives
below both.

Contents (plain containers and tensors only): format tag and version, the run config (model, diffusion,
sampler, self-conditioning, loss, training), data_info (z_bins, z_range, slice size, cache, fold), the
state_dict of the denoiser, `weights` (which weights the state_dict holds: "ema" or "raw"), training
provenance (epoch, step, best val/loss, versions; the DDP world size, the per-device
and the effective batch: world_size, batch_size_per_device, effective_batch_size).
"""

from __future__ import annotations

from pathlib import Path

import torch

from slimdiff.diffusion.schedule import Diffusion
from slimdiff.errors import SlimdiffInputError
from slimdiff.io import atomic_path
from slimdiff.model.factory import build_denoiser

FORMAT = "slimdiff-model"
FORMAT_VERSION = 1
# What a state_dict can hold: the exponential moving average of the weights kept during training, or the
# optimiser's own weights. Files written before the `weights` key existed hold the EMA weights (training has
# always exported those), so that is what a file without the key is read as.
WEIGHT_KINDS = ("ema", "raw")
WEIGHTS_OF_OLDER_FILES = "ema"


class ModelFileError(SlimdiffInputError):
    """A model.pt or checkpoint that cannot be used as asked."""


def save_model(
    path: str | Path, state_dict: dict, run_cfg: dict, data_info: dict, provenance: dict, *, weights: str
) -> None:
    """Write a model.pt; `weights` says which weights `state_dict` holds (one of WEIGHT_KINDS)."""
    if weights not in WEIGHT_KINDS:
        raise ValueError(f"weights must be one of {WEIGHT_KINDS}, not {weights!r}")
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "run_cfg": run_cfg,
        "data_info": data_info,
        "state_dict": {k: v.detach().cpu().float().contiguous() for k, v in state_dict.items()},
        "weights": weights,
        "provenance": provenance,
    }
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(payload, tmp)


def read_model_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign pickles
        raise ModelFileError(f"{path}: not a readable model file ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a slimdiff model.pt (no '{FORMAT}' format tag)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path}: model format version {payload.get('format_version')} is not {FORMAT_VERSION}")
    return payload


def weight_kind(payload: dict) -> str:
    """Which weights a model file's state_dict holds ("ema" or "raw"), as the file says; older files hold EMA."""
    return payload.get("weights", WEIGHTS_OF_OLDER_FILES)


def load_denoiser(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild (net, diffusion, payload) from a model.pt, refusing weights that do not fit the stored config."""
    payload = read_model_file(path)
    cfg, info = payload["run_cfg"], payload["data_info"]
    net = build_denoiser(
        cfg["model"], cfg["self_conditioning"]["enabled"], info["z_bins"], info["z_range"], info["image_size"]
    )
    check_state_dict(net.state_dict(), payload["state_dict"], path)
    net.load_state_dict(payload["state_dict"])
    d = cfg["diffusion"]
    return net.to(device).eval(), Diffusion(d["timesteps"], d["prediction"], d["clip"]).to(device), payload


def check_state_dict(expected: dict, found: dict, path) -> None:
    """Name the first mismatching tensors instead of letting load_state_dict crash on shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = [k for k in expected if k in found and tuple(expected[k].shape) != tuple(found[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} with other shapes (e.g. {k}: {tuple(found[k].shape)} vs {tuple(expected[k].shape)})"
            )
        raise ModelFileError(f"{path}: weights do not match the model config: " + "; ".join(parts))
