"""A small MONAI U-Net lesion segmenter, trained per arm and seed, scored on a fold's real test slices.

The question is relative (do synthetic pairs help?), so the segmenter only has to be the same in every arm:
a fixed number of optimiser steps (arms with 600 or 1,800 slices cost the same time), lesion slices drawn with
probability `lesion_fraction` per batch element (lesions are ~0.2 % of pixels; without oversampling a small
network learns "background everywhere"), and a seed that fixes initial weights, batch order and flips.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from slimdiff.config import ConfigError, validate_config
from slimdiff.errors import SlimdiffInputError
from slimdiff.utility.lesionwise import false_positive_components, lesion_sensitivity

log = logging.getLogger(__name__)

# Defaults of the config's `utility` section, from config/schema.yaml: about 8 s per arm and seed at 64x64 on one
# CPU thread. With lesion_fraction 0.5 or lr 3e-3 the default cache's segmenters were still predicting no lesion
# at all after 200 steps; with 0.8 and 1e-2 they start finding lesions after about 150, so 300 leaves a margin.
UTILITY_DEFAULTS: dict = validate_config({})["utility"]

# Summarised over seeds; the counts beside them are the same for every seed.
SEED_METRICS = ("dice_lesion_slices", "lesion_sensitivity", "lesions_found", "fp_components_per_control_slice")


class UtilityDataError(SlimdiffInputError, ValueError):
    """Slices that cannot train or test a segmenter (none at all, or shapes that disagree)."""


def utility_settings(cfg: Mapping) -> dict:
    """UTILITY_DEFAULTS overlaid with the pipeline config's `utility` section; an unknown key is a typo."""
    section = dict(cfg.get("utility") or {})
    unknown = sorted(set(section) - set(UTILITY_DEFAULTS))
    if unknown:
        raise ConfigError(f"utility: unknown settings {', '.join(unknown)} (known: {', '.join(UTILITY_DEFAULTS)})")
    return {**UTILITY_DEFAULTS, **section}


def binarise(masks: np.ndarray, tau: float) -> np.ndarray:
    """mask > tau, the rule MMD-MF uses, so the segmenter learns the lesions the metrics count."""
    return np.asarray(masks, np.float32) > tau


def build_segmenter(cfg: Mapping) -> torch.nn.Module:
    """A 2D MONAI U-Net, one FLAIR channel in, background/lesion logits out."""
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=2,
        channels=tuple(cfg["channels"]),
        strides=tuple(cfg["strides"]),
        num_res_units=cfg["num_res_units"],
    )


def _check_shape(images: np.ndarray, masks: np.ndarray, strides: Sequence[int]) -> None:
    if len(images) == 0:
        raise UtilityDataError("no training slices: a segmenter needs at least one image/mask pair")
    if images.shape != masks.shape or images.ndim != 3:
        raise UtilityDataError(f"images {images.shape} and masks {masks.shape} must both be (N, H, W)")
    factor = math.prod(strides)
    if images.shape[1] % factor or images.shape[2] % factor:
        raise ConfigError(
            f"utility.strides {list(strides)}: slices of {images.shape[1]}x{images.shape[2]} px are not divisible "
            f"by their product {factor}"
        )


def draw_batch(
    lesion_rows: torch.Tensor,
    other_rows: torch.Tensor,
    batch_size: int,
    lesion_fraction: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Row indices of one batch: each element is a lesion slice with probability lesion_fraction.

    When one of the two pools is empty every element comes from the other, so an arm without lesion slices
    (or with nothing else) still trains.
    """
    if len(lesion_rows) == 0 or len(other_rows) == 0:
        pool = lesion_rows if len(other_rows) == 0 else other_rows
        return pool[torch.randint(len(pool), (batch_size,), generator=generator)]
    take_lesion = torch.rand(batch_size, generator=generator) < lesion_fraction
    lesion = lesion_rows[torch.randint(len(lesion_rows), (batch_size,), generator=generator)]
    other = other_rows[torch.randint(len(other_rows), (batch_size,), generator=generator)]
    return torch.where(take_lesion, lesion, other)


def _random_flip(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-right flips, half the batch: lesions occur in either hemisphere."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)[:, None, None, None]
    return torch.where(flip, x.flip(-1), x), torch.where(flip, y.flip(-1), y)


def train_arm(
    images: np.ndarray, masks: np.ndarray, cfg: Mapping, seed: int, device: str = "cpu", tau: float = 0.0
) -> torch.nn.Module:
    """Train a segmenter on (N, H, W) images in [-1, 1] and masks binarised at tau; same seed, same weights (CPU).

    The seed fixes the initial weights (under a forked global RNG, so callers' random state is untouched) and a
    private generator fixes batch order and flips.
    """
    images, masks = np.asarray(images, np.float32), np.asarray(masks, np.float32)
    _check_shape(images, masks, cfg["strides"])
    from monai.losses import DiceCELoss

    labels = binarise(masks, tau)
    has_lesion = torch.from_numpy(labels.any(axis=(1, 2)))
    lesion_rows, other_rows = torch.nonzero(has_lesion).ravel(), torch.nonzero(~has_lesion).ravel()
    x = torch.from_numpy(images)[:, None].to(device)
    y = torch.from_numpy(labels.astype(np.int64))[:, None].to(device)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = build_segmenter(cfg).to(device)
    generator = torch.Generator().manual_seed(seed)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.AdamW(net.parameters(), lr=cfg["lr"])
    net.train()
    for _ in tqdm(range(cfg["steps"]), desc=f"segmenter seed {seed}", unit="step", disable=None, leave=False):
        rows = draw_batch(lesion_rows, other_rows, cfg["batch_size"], cfg["lesion_fraction"], generator).to(device)
        xb, yb = _random_flip(x[rows], y[rows], generator)
        loss = loss_fn(net(xb), yb)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    net.eval()
    return net


@torch.no_grad()
def predict(net: torch.nn.Module, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Boolean (N, H, W) lesion maps: the argmax of the two logits."""
    device = next(net.parameters()).device
    net.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.as_tensor(np.asarray(images[start : start + batch_size], np.float32))[:, None].to(device)
        out.append(net(x).argmax(dim=1).bool().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, *np.shape(images)[1:]), bool)


def dice_per_slice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Lesion Dice of each (H, W) slice (MONAI DiceMetric); NaN where the slice has no true lesion pixel."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    if len(pred) == 0:
        return np.zeros(0)
    metric = DiceMetric(include_background=False, reduction="none")
    p = one_hot(torch.from_numpy(pred.astype(np.int64))[:, None], num_classes=2)
    t = one_hot(torch.from_numpy(truth.astype(np.int64))[:, None], num_classes=2)
    return metric(y_pred=p, y=t)[:, 0].numpy().astype(float)


def evaluate_segmenter(
    net: torch.nn.Module,
    test_images: np.ndarray,
    test_masks: np.ndarray,
    test_classes: np.ndarray,
    cfg: Mapping,
    tau: float,
) -> dict:
    """Dice on the lesion (class 1) test slices, lesion-wise sensitivity, and false alarms per control slice.

    Dice alone rewards getting the big lesions' outlines right; sensitivity asks whether each lesion is found at
    all, and false-positive components on lesion-free (class 0) slices say what that costs.
    """
    pred, truth = predict(net, test_images, cfg["batch_size"]), binarise(test_masks, tau)
    classes = np.asarray(test_classes)
    lesion_slices, control_slices = classes == 1, classes == 0
    dice = dice_per_slice(pred[lesion_slices], truth[lesion_slices])
    found, total = lesion_sensitivity(truth, pred)
    n_control = int(control_slices.sum())
    out = {
        "dice_lesion_slices": float(np.nanmean(dice)) if np.isfinite(dice).any() else math.nan,
        "lesion_sensitivity": found / total if total else math.nan,
        "lesions_found": found,
        "lesions_total": total,
        "fp_components_per_control_slice": (
            false_positive_components(pred[control_slices]) / n_control if n_control else math.nan
        ),
        "n_test_lesion_slices": int(lesion_slices.sum()),
        "n_test_control_slices": n_control,
    }
    reasons = {}
    if not np.isfinite(out["dice_lesion_slices"]):
        reasons["dice_lesion_slices"] = "no test lesion slice with a true lesion pixel"
    if not total:
        reasons["lesion_sensitivity"] = "no real lesions in the test slices"
    if not n_control:
        reasons["fp_components_per_control_slice"] = "no control (class 0) test slices"
    if reasons:
        out["null_reasons"] = reasons
    return out


def summarise_seeds(per_seed: list[dict]) -> dict:
    """Mean and sample standard deviation over seeds of each metric in SEED_METRICS."""
    out = {}
    for key in SEED_METRICS:
        values = np.array([r[key] for r in per_seed], float)
        entry = {
            "mean": float(values.mean()) if len(values) else math.nan,
            "std": float(values.std(ddof=1)) if len(values) >= 2 else math.nan,
        }
        reasons = {}
        if not np.isfinite(entry["mean"]):
            reasons["mean"] = "undefined for at least one seed (see per_seed)" if len(values) else "no seeds"
        if len(values) < 2:
            reasons["std"] = "fewer than 2 seeds"
        elif not np.isfinite(entry["std"]):
            reasons["std"] = "undefined for at least one seed (see per_seed)"
        if reasons:
            entry["null_reasons"] = reasons
        out[key] = entry
    return out


def run_arms(
    arms: Mapping[str, tuple[np.ndarray, np.ndarray]],
    test: Mapping[str, np.ndarray],
    cfg: Mapping,
    tau: float,
    seeds: Sequence[int],
    device: str = "cpu",
) -> dict:
    """Train and score every arm with every seed: {arm: {per_seed: [{seed, metrics}], summary: {metric: mean, std}}}.

    `test` holds the real test slices (images, masks, class), the same for every arm.
    """
    out = {}
    for name, (images, masks) in arms.items():
        per_seed = []
        for seed in seeds:
            net = train_arm(images, masks, cfg, seed, device, tau)
            result = evaluate_segmenter(net, test["images"], test["masks"], test["class"], cfg, tau)
            log.info(
                "arm %s seed %d: Dice %.3f, lesions found %d/%d, FP per control slice %.3f",
                name,
                seed,
                result["dice_lesion_slices"],
                result["lesions_found"],
                result["lesions_total"],
                result["fp_components_per_control_slice"],
            )
            per_seed.append({"seed": int(seed), **result})
        out[name] = {"per_seed": per_seed, "summary": summarise_seeds(per_seed)}
    return out


def mix_real_and_synthetic(
    real: tuple[np.ndarray, np.ndarray], syn: tuple[np.ndarray, np.ndarray], ratio: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Real (images, masks) plus round(ratio * n_real) synthetic pairs drawn by seed.

    Drawn without replacement when there are enough synthetic pairs (no pair counts twice), with replacement
    otherwise, so the ratio set in the config is the ratio trained on.
    """
    n_real, n_syn = len(real[0]), len(syn[0])
    n_draw = round(ratio * n_real)
    if n_draw and not n_syn:
        raise UtilityDataError(f"{n_draw} synthetic pairs requested (ratio {ratio}) but there are none")
    rows = np.random.default_rng(seed).choice(n_syn, n_draw, replace=n_draw > n_syn) if n_draw else np.zeros(0, int)
    images = np.concatenate([np.asarray(real[0], np.float32), np.asarray(syn[0], np.float32)[rows]])
    masks = np.concatenate([np.asarray(real[1], np.float32), np.asarray(syn[1], np.float32)[rows]])
    return images, masks
