"""Upstream U-Net weights -> this project's JointDenoiser, and the model.pt that carries them.

Both sides build MONAI's DiffusionModelUNet, so its keys carry over under `unet.`; only upstream's token
embedding (`ConditionalEmbeddingWithSinusoidal`) has other names for the same layers:

    pathology_embedding        -> class_embedding      z_encoder.bin_embedding -> bin_embedding
    z_encoder.combine          -> z_fuse               combine                  -> fuse
    null_embedding (1, d)      -> null (d)             z_encoder.sinusoidal.pe  -> checked against bin_code

The sinusoidal table is not copied but checked: upstream looks up PE at each bin's centre slice, which this
project recomputes from z_range; a disagreement would mean another z-binning and is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from slimdiff import provenance
from slimdiff.io import file_sha256
from slimdiff.model.factory import build_denoiser
from slimdiff.model.file import ModelFileError, check_state_dict, save_model
from slimdiff.upstream.checkpoint import UpstreamCheckpoint, UpstreamImportError, read_upstream_checkpoint
from slimdiff.upstream.config_map import map_upstream_config

EMBEDDING = "class_embedding."
RENAMED = {
    "pathology_embedding.weight": "class_embedding.weight",
    "z_encoder.bin_embedding.weight": "bin_embedding.weight",
    "z_encoder.combine.weight": "z_fuse.weight",
    "z_encoder.combine.bias": "z_fuse.bias",
    "combine.weight": "fuse.weight",
    "combine.bias": "fuse.bias",
    "null_embedding": "null",
}
SINUSOID_TABLE = "z_encoder.sinusoidal.pe"
PE_TOLERANCE = 1e-5


def import_upstream(
    ckpt_path: str | Path,
    out: str | Path,
    config: dict | None = None,
    priors: str | Path | None = None,
    weights: str = "auto",
) -> dict:
    """Convert an upstream checkpoint into model.pt; returns a summary (weights used, parameters, not_mapped)."""
    ckpt = read_upstream_checkpoint(ckpt_path)
    up_cfg = config if config is not None else ckpt.config
    if up_cfg is None:
        raise UpstreamImportError(f"{ckpt.path}: holds no training config (hyper_parameters); give --config")
    run_cfg, data_info, not_mapped = map_upstream_config(up_cfg)
    if ckpt.other_modules:
        raise UpstreamImportError(
            f"{ckpt.path}: holds weights of {', '.join(ckpt.other_modules)} besides the U-Net "
            "(a cross-attention prior encoder?), which this project's model has no place for"
        )
    kind, upstream_state = _pick_weights(ckpt, weights)
    net = build_denoiser(
        run_cfg["model"],
        run_cfg["self_conditioning"]["enabled"],
        data_info["z_bins"],
        data_info["z_range"],
        data_info["image_size"],
    )
    state = map_state_dict(upstream_state, net, ckpt.path)
    if run_cfg["model"]["anatomical_prior"] == "concat":
        if priors is None:
            raise UpstreamImportError(
                f"{ckpt.path}: model.anatomical_conditioning is on; give --priors (upstream's z-bin priors .npz)"
            )
        rois = read_upstream_priors(priors, data_info["z_bins"], data_info["image_size"])
        state["priors"] = torch.from_numpy(rois * 2 - 1)
    try:
        check_state_dict(net.state_dict(), state, ckpt.path)
    except ModelFileError as exc:
        raise UpstreamImportError(f"{exc} (after mapping the upstream config)") from None
    net.load_state_dict(state)
    summary = {
        "imported_from": ckpt.path.name,
        "sha256": file_sha256(ckpt.path),
        "weights": kind,
        "ema_source": ckpt.ema_source if kind == "ema" else None,
        "upstream": ckpt.info,
        "not_mapped": not_mapped,
        "parameters": sum(p.numel() for p in net.parameters()),
    }
    provenance_record = {
        "run": "pretrained",
        "epoch": ckpt.info.get("epoch"),
        "global_step": ckpt.info.get("global_step"),
        "best_val_loss": None,
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
        "import": summary,
        "upstream_config": up_cfg,
    }
    save_model(out, net.state_dict(), run_cfg, data_info, provenance_record, weights=kind)
    return summary


def _pick_weights(ckpt: UpstreamCheckpoint, weights: str) -> tuple[str, dict]:
    if weights not in ("auto", "ema", "raw"):
        raise ValueError(f"weights must be auto, ema or raw, not {weights!r}")
    if weights == "raw" or (weights == "auto" and ckpt.ema is None):
        return "raw", ckpt.raw
    if ckpt.ema is None:
        raise UpstreamImportError(f"{ckpt.path}: holds no EMA weights (EMA was off in training); use --weights raw")
    return "ema", ckpt.ema


def map_state_dict(upstream: dict[str, torch.Tensor], net: torch.nn.Module, path) -> dict[str, torch.Tensor]:
    """Upstream U-Net state (keys relative to the U-Net) -> this project's JointDenoiser state."""
    ours: dict[str, torch.Tensor] = {}
    table = None
    for key, value in upstream.items():
        if not torch.is_tensor(value):
            raise UpstreamImportError(f"{path}: weight {key} is a {type(value).__name__}, not a tensor")
        if key.startswith(EMBEDDING):
            inner = key[len(EMBEDDING) :]
            if inner == SINUSOID_TABLE:
                table = value
                continue
            if inner not in RENAMED:
                raise UpstreamImportError(f"{path}: token-embedding weight {key} has no counterpart here")
            value = value.reshape(-1) if inner == "null_embedding" else value
            ours[f"unet.{EMBEDDING}{RENAMED[inner]}"] = value.float()
        else:
            ours[f"unet.{key}"] = value.float()
    if table is not None:
        _check_sinusoid(table, net, path)
    return ours


def _check_sinusoid(table: torch.Tensor, net: torch.nn.Module, path) -> None:
    embedding = net.unet.class_embedding
    z_min, z_max = embedding.z_range
    n = embedding.n_bins
    # upstream: bin centre in float32, truncated, clamped to z_range and to the table
    centre = (z_min + (torch.arange(n, dtype=torch.float32) + 0.5) / n * (z_max - z_min + 1)).long()
    centre = centre.clamp(z_min, z_max).clamp(0, table.shape[0] - 1)
    theirs = table[centre].float()
    if theirs.shape != embedding.bin_code.shape:
        raise UpstreamImportError(
            f"{path}: weights do not match the model config: z-position code of width {table.shape[1]}, "
            f"the config's embedding has {embedding.bin_code.shape[1]}"
        )
    gap = (theirs - embedding.bin_code).abs().max().item()
    if gap > PE_TOLERANCE:
        raise UpstreamImportError(
            f"{path}: upstream's z-position code differs from this project's by {gap:.2g} "
            "(another z-binning or conditioning.max_z below the z_range)"
        )


def read_upstream_priors(path: str | Path, z_bins: int, image_size) -> np.ndarray:
    """(z_bins, H, W) bool from upstream's priors .npz (arrays bin_0 .. bin_{n-1}; its pickled metadata is skipped)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [f"bin_{b}" for b in range(z_bins) if f"bin_{b}" not in data.files]
            if missing:
                raise UpstreamImportError(f"{path}: no prior for {missing[0]} ({len(missing)} of {z_bins} missing)")
            rois = np.stack([np.asarray(data[f"bin_{b}"]).astype(bool) for b in range(z_bins)])
    except FileNotFoundError:
        raise UpstreamImportError(f"{path}: priors file not found") from None
    except (OSError, ValueError, EOFError) as exc:
        raise UpstreamImportError(f"{path}: not a readable priors file ({type(exc).__name__}: {exc})") from None
    if tuple(rois.shape[1:]) != tuple(image_size):
        raise UpstreamImportError(f"{path}: priors are {rois.shape[1:]}, the model's slices {tuple(image_size)}")
    return rois.astype(np.float32)


def read_upstream_yaml(path: str | Path) -> dict:
    """An upstream training config as plain containers (OmegaConf, as upstream reads it: ${...} resolved)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = Path(path)
    if not path.is_file():
        raise UpstreamImportError(f"{path}: upstream config not found")
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    except (OmegaConfBaseException, ValueError, OSError) as exc:
        raise UpstreamImportError(f"{path}: not a readable upstream config ({type(exc).__name__}: {exc})") from None
    if not isinstance(cfg, dict):
        raise UpstreamImportError(f"{path}: an upstream config is a mapping, not a {type(cfg).__name__}")
    return cfg
