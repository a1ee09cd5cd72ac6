"""Upstream training config -> this project's run config and data_info, key by key.

Everything that shapes the network or the sampling math is mapped or refused with the upstream key named:
a model converted on a guess would sample quietly wrong. Training-only settings (loss, optimiser) do not
touch the weights; the ones with a counterpart are carried over, the rest are listed in `not_mapped`.

| upstream                                   | here                                     |
|--------------------------------------------|------------------------------------------|
| model.channels / attention_levels / ...    | model.* (same MONAI DiffusionModelUNet)  |
| model.anatomical_conditioning (+ method)   | model.anatomical_prior: none | concat    |
| conditioning.cfg.enabled                   | model.cfg_null_token                     |
| conditioning.z_bins, data.slice_sampling.z_range, data.transforms.roi_size | data_info   |
| scheduler.prediction_type sample/epsilon/v_prediction | diffusion.prediction x0/epsilon/v |
| scheduler.num_train_timesteps, clip_sample | diffusion.timesteps, clip                |
| sampler.num_inference_steps, eta, guidance_scale | sampler.steps, eta, guidance_scale |
| training.self_conditioning.*               | self_conditioning.*                      |
| loss.lp_norm.p, lesion_weighted_*          | loss.p, loss.lesion_weight_*             |
"""

from __future__ import annotations

import copy

from slimdiff.config import load_config
from slimdiff.experiments import RUN_SECTIONS
from slimdiff.upstream.checkpoint import UpstreamImportError

PREDICTIONS = {"sample": "x0", "epsilon": "epsilon", "v_prediction": "v"}
_MISSING = object()


def _get(cfg: dict, dotted: str, default=_MISSING):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise UpstreamImportError(f"upstream config has no `{dotted}`")
            return default
        node = node[part]
    return node


def _require(cfg: dict, dotted: str, allowed, why: str, default=_MISSING):
    value = _get(cfg, dotted, default)
    if value not in allowed:
        raise UpstreamImportError(f"upstream `{dotted}: {value!r}` cannot be mapped: {why}")
    return value


def map_upstream_config(up: dict) -> tuple[dict, dict, list[str]]:
    """(run_cfg, data_info, not_mapped) for an upstream config; UpstreamImportError names what cannot map."""
    run = {s: copy.deepcopy(v) for s, v in load_config(None).items() if s in RUN_SECTIONS}
    run["model"].update(_model(up))
    run["diffusion"].update(_diffusion(up))
    run["sampler"].update(_sampler(up))
    sc = _get(up, "training.self_conditioning", {})
    run["self_conditioning"].update(
        enabled=bool(sc.get("enabled", False)), probability=float(sc.get("probability", 0.5)), per_sample=False
    )
    not_mapped = _loss(up, run["loss"])
    return run, _data_info(up), not_mapped


def _model(up: dict) -> dict:
    _require(
        up, "model.type", {"DiffusionModelUNet"}, "only the shared/decoupled U-Net module exists in slim-diff 1.0.0"
    )
    _require(
        up,
        "model.bottleneck_mode",
        {"shared"},
        "slim-diff 1.0.0 has no decoupled bottleneck, so there is no upstream layout to map from",
        default="shared",
    )
    _require(up, "model.spatial_dims", {2}, "the model is 2D")
    _require(up, "model.in_channels", {2}, "the model's base input is image + mask")
    _require(up, "model.out_channels", {2}, "the model outputs image + mask")
    _require(up, "model.resblock_updown", {False}, "this project's U-Net down/up-samples by convolution", default=False)
    _require(up, "model.use_class_embedding", {True}, "tokens need the class embedding")
    _require(up, "conditioning.use_sinusoidal", {True}, "this project's token embedding is the sinusoidal one")
    anatomical = bool(_get(up, "model.anatomical_conditioning", False))
    prior = "none"
    if anatomical:
        prior = _require(
            up,
            "model.anatomical_conditioning_method",
            {"concat"},
            "upstream's cross-attention prior encoders differ from this project's; only the concat prior maps",
            default="concat",
        )
    if not anatomical:
        _require(
            up, "model.with_conditioning", {False}, "cross-attention context without a prior encoder", default=False
        )
    z_bins = int(_get(up, "conditioning.z_bins"))
    cfg_on = bool(_get(up, "conditioning.cfg.enabled", False))
    if cfg_on:
        _require(up, "conditioning.cfg.null_token", {2 * z_bins}, f"the null token is 2 * z_bins = {2 * z_bins}")
    return {
        "variant": "shared",
        "channels": [int(c) for c in _get(up, "model.channels")],
        "attention_levels": [bool(a) for a in _get(up, "model.attention_levels")],
        "num_res_blocks": int(_get(up, "model.num_res_blocks")),
        "num_head_channels": int(_get(up, "model.num_head_channels")),
        "norm_num_groups": int(_get(up, "model.norm_num_groups")),
        "anatomical_prior": prior,
        "cfg_null_token": cfg_on,
    }


def _diffusion(up: dict) -> dict:
    _require(up, "scheduler.schedule", {"cosine"}, "this project implements MONAI's cosine schedule only")
    if _get(up, "scheduler.clip_sample", True):
        _require(up, "scheduler.clip_sample_range", {1.0}, "x0 estimates are clamped to [-1, 1]", default=1.0)
    prediction = _require(up, "scheduler.prediction_type", set(PREDICTIONS), f"expected one of {sorted(PREDICTIONS)}")
    return {
        "timesteps": int(_get(up, "scheduler.num_train_timesteps")),
        "prediction": PREDICTIONS[prediction],
        "clip": bool(_get(up, "scheduler.clip_sample", True)),
    }


def _sampler(up: dict) -> dict:
    sampler = _get(up, "sampler", {})
    out = {"spacing": "leading"}  # MONAI's DDIMScheduler grid, which upstream samples on
    if "num_inference_steps" in sampler:
        out["steps"] = int(sampler["num_inference_steps"])
    if "eta" in sampler:
        out["eta"] = float(sampler["eta"])
    if "guidance_scale" in sampler:
        out["guidance_scale"] = float(sampler["guidance_scale"])
    return out


def _loss(up: dict, loss: dict) -> list[str]:
    """Carry over what has a counterpart; return the training-only keys that do not (weights don't depend on them)."""
    up_loss = _get(up, "loss", {})
    mode = up_loss.get("mode", "mse_channels")
    not_mapped = []
    if mode in ("mse_lp_norm", "mse_lp_norm_ffl_groups"):
        loss["p"] = float(_get(up, "loss.lp_norm.p", 2.0))
    elif mode in ("mse_channels", "mse_ffl_groups"):
        loss["p"] = 2.0
    else:
        not_mapped.append(f"loss.mode: {mode}")
    for channel in ("image", "mask"):
        weighted = up_loss.get(f"lesion_weighted_{channel}", {})
        if weighted.get("enabled"):
            loss[f"lesion_weight_{channel}"] = float(weighted.get("lesion_weight", 1.0))
            if float(weighted.get("background_weight", 1.0)) != 1.0:
                not_mapped.append(f"loss.lesion_weighted_{channel}.background_weight")
    loss["uncertainty_weighting"] = bool(_get(up, "loss.uncertainty_weighting.enabled", False))
    loss["ffl"]["enabled"] = "ffl" in mode
    if loss["ffl"]["enabled"]:
        not_mapped.append("loss.ffl.* (FFL settings, training only)")
    return not_mapped


def _data_info(up: dict) -> dict:
    roi = _get(up, "data.transforms.roi_size")
    z_range = [int(z) for z in _get(up, "data.slice_sampling.z_range")]
    return {
        "z_bins": int(_get(up, "conditioning.z_bins")),
        "z_range": z_range,
        "image_size": [int(roi[0]), int(roi[1])],
        "spacing_mm": _get(up, "data.transforms.target_spacing", None),
        "fold": None,
    }
