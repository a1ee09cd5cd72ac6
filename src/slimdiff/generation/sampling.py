"""Seeded, batched sampling of (image, mask) pairs per condition.

Every sample owns a CPU torch.Generator seeded by a hash of (seed, replica, z_bin, class, k); its starting
noise x_T and every DDIM eta-noise draw come from that generator, in that order. So a sample is the same
whether z-bins are generated in one job or thirty, in any batch size, on any device (within float tolerance).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from slimdiff.allocator import keep_freed_memory
from slimdiff.config import ConfigError
from slimdiff.data.slices import token
from slimdiff.diffusion.sampler import classifier_free_guidance, ddim_sample
from slimdiff.model.conditioning import null_token_offset


def sample_seed(seed: int, replica: int, z_bin: int, cls: int, k: int) -> int:
    digest = hashlib.sha256(repr((int(seed), int(replica), int(z_bin), int(cls), int(k))).encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


@dataclass(frozen=True)
class Condition:
    z_bin: int
    cls: int
    n: int


def expand_conditions(conditions: list[Condition], seed: int, replica: int) -> dict[str, np.ndarray]:
    """One row per sample: z_bin, class, k (index within its condition), seed."""
    z, c, k, s = [], [], [], []
    for cond in conditions:
        for i in range(cond.n):
            z.append(cond.z_bin)
            c.append(cond.cls)
            k.append(i)
            s.append(sample_seed(seed, replica, cond.z_bin, cond.cls, i))
    return {
        "z_bin": np.array(z, np.int32),
        "class": np.array(c, np.int32),
        "k": np.array(k, np.int32),
        "seed": np.array(s, np.int64),
    }


COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


def compute_dtype_for(storage_dtype: str, device: str | torch.device, requested: str = "auto") -> str:
    """The precision the denoiser computes in while sampling (generation.compute_dtype).

    `auto` follows the storage dtype (generation.dtype) and the device: samples stored in float16 are computed
    under bfloat16 autocast on CUDA; on the CPU, and for float32 storage, in float32. `bfloat16` asks for
    bfloat16 autocast on any device: on a CPU it runs oneDNN's bf16 kernels, fast only where the CPU has them
    natively (slimdiff.device.cpu_has_native_bf16); that is how the pilot runs the paper's GPU precision on a CPU.
    """
    if requested not in COMPUTE_DTYPES:
        raise ConfigError(f"generation.compute_dtype {requested!r}: must be one of {', '.join(COMPUTE_DTYPES)}")
    if requested != "auto":
        return requested
    return "bfloat16" if str(device).startswith("cuda") and storage_dtype == "float16" else "float32"


def _autocast(device: torch.device, dtype: str):
    if dtype == "bfloat16" or (device.type == "cuda" and dtype == "float16"):
        return torch.autocast(device.type, dtype=getattr(torch, dtype))
    return torch.autocast(device.type, enabled=False)


def generate_samples(
    net,
    diffusion,
    payload: dict,
    conditions: list[Condition],
    seed: int,
    replica: int = 0,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    steps: int | None = None,
    eta: float | None = None,
    spacing: str | None = None,
    guidance_scale: float | None = None,
    compute_dtype: str = "float32",
    progress: bool = True,
) -> dict[str, np.ndarray]:
    """Sample every condition; returns float32 images/masks (N,H,W) in [-1, 1] plus metadata arrays.

    `compute_dtype` is the autocast precision, resolved by compute_dtype_for (float32: no autocast).
    """
    keep_freed_memory()  # the DDIM loop frees and reallocates the same activations at every step
    device = torch.device(device)
    run, info = payload["run_cfg"], payload["data_info"]
    overrides = {"steps": steps, "eta": eta, "spacing": spacing, "guidance_scale": guidance_scale}
    sampler = _sampler_settings(run["sampler"], overrides)
    n_bins = info["z_bins"]
    _check_conditions(conditions, n_bins)
    meta = expand_conditions(conditions, seed, replica)
    meta["token"] = token(meta["z_bin"], meta["class"], n_bins).astype(np.int32)
    n = len(meta["seed"])
    h, w = info["image_size"]
    images = np.zeros((n, h, w), np.float32)
    masks = np.zeros((n, h, w), np.float32)
    model = _guided_model(net, run, sampler["guidance_scale"], n_bins)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="sampling batches", unit="batch", disable=not progress):
        idx = slice(start, min(start + batch_size, n))
        out = _sample_batch(
            model, diffusion, meta["seed"][idx], meta["token"][idx], (h, w), sampler, run, device, compute_dtype
        )
        images[idx], masks[idx] = out[:, 0], out[:, 1]
    return {"images": images, "masks": masks, **meta, "sampler": sampler}


def _sampler_settings(stored: dict, overrides: dict) -> dict:
    """The model's sampler config with the given (not None) overrides."""
    sampler = dict(stored)
    for key, value in overrides.items():
        if value is not None:
            sampler[key] = value
    return sampler


def _check_conditions(conditions: list[Condition], n_bins: int) -> None:
    for cond in conditions:
        if not 0 <= cond.z_bin < n_bins or cond.cls not in (0, 1) or cond.n < 0:
            raise ValueError(f"invalid condition {cond} for a model with {n_bins} z-bins")


def _guided_model(net, run: dict, guidance_scale: float, n_bins: int):
    """The network itself, or wrapped in classifier-free guidance when the scale is not 1."""
    if guidance_scale == 1.0:
        return net
    if not run["model"]["cfg_null_token"]:
        raise ConfigError("guidance_scale > 1 needs a model trained with model.cfg_null_token: true")
    return classifier_free_guidance(net, null_token_offset(n_bins), guidance_scale)


def _sample_batch(
    model, diffusion, seeds, tokens, size, sampler: dict, run: dict, device: torch.device, compute_dtype: str
) -> np.ndarray:
    """One batch, (B, 2, H, W) float32 in [-1, 1]: each sample's x_T, then its eta noise, from its own generator."""
    h, w = size
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    x_T = torch.stack([torch.randn(2, h, w, generator=g) for g in gens]).to(device)
    tokens = torch.as_tensor(tokens, device=device).long()

    def noise(step, shape):
        return torch.stack([torch.randn(shape[1:], generator=g) for g in gens]).to(device)

    with _autocast(device, compute_dtype):
        out = ddim_sample(
            model,
            diffusion,
            x_T,
            tokens,
            sampler["steps"],
            sampler["eta"],
            sampler["spacing"],
            self_condition=run["self_conditioning"]["enabled"],
            noise=noise,
        )
    return out.float().clamp(-1, 1).cpu().numpy()


def time_one_batch(net, diffusion, payload: dict, batch_size: int, device) -> float:
    """Seconds for one denoiser call on a batch: the unit of the dry-run time estimate."""
    h, w = payload["data_info"]["image_size"]
    x = torch.zeros(batch_size, 2, h, w, device=device)
    t = torch.full((batch_size,), 500, device=device)
    tok = torch.zeros(batch_size, dtype=torch.long, device=device)
    sc = torch.zeros_like(x) if payload["run_cfg"]["self_conditioning"]["enabled"] else None
    with torch.no_grad():
        net(x, t, tok, sc)
        start = time.perf_counter()
        net(x, t, tok, sc)
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start
