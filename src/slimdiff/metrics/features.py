"""Inception pool3 features of image sets, extracted once per set and cached by content.

Pixel path (fixing the upstream's double scaling, see below): [-1, 1] -> [0, 1] -> uint8 exactly
once (rounded), at the native size -> 3 channels -> torch-fidelity's InceptionV3, which does its own
TensorFlow-compatible resize to 299 x 299 and normalises (x - 128) / 128. These are then the features
`torch_fidelity.calculate_metrics` extracts from the same uint8 images, so FID and KID are comparable with
published TF-FID / torch-fidelity values (resizing here in float before the uint8 step moved FID by ~4 %).
The upstream fed uint8 to a path that multiplied by 255 again, wrapping pixel values modulo 256 and inverting
the tissue contrast.

For comparability with the paper's numbers, `pixels="upstream"` rebuilds upstream's path (evaluation.md 1.3):
[-1, 1] -> [0, 1] -> 3 channels -> bilinear to 299 x 299 in float -> uint8 by truncation -> the second x255 of
torchmetrics' normalize=True, i.e. p -> (256 - p) mod 256. `pixels="upstream_no_wrap"` stops before the wrap:
what upstream's feature nearest-neighbour / memorisation extractor feeds its network, whose output is the
1008-d unbiased logits (`feature="logits_unbiased"`), not the pool3 its docs name. Both are options, tested
against upstream's own functions in tests/test_metric_parity.py; the default stays the fixed path.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from slimdiff.errors import MissingInputError
from slimdiff.io import write_npy
from slimdiff.metrics.weights import INCEPTION, hub_checkpoints, sha256

log = logging.getLogger(__name__)


# Part of the feature-cache key: features cached under another pixel path are never reused.
PIXEL_PATHS = {
    "fixed": "uint8-native-size/torch-fidelity-resize",
    "upstream": "float-bilinear-299/uint8-truncated/x255-wraparound",
    "upstream_no_wrap": "float-bilinear-299/uint8-truncated",
}
FEATURE_DIMS = {"2048": 2048, "logits_unbiased": 1008}
UPSTREAM_SIZE = 299


def to_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) in [-1, 1] -> (N, H, W) uint8, scaled to 0..255 once and rounded: the image as a PNG holds it."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    return (((x + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def to_inception_uint8(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N, H, W) in [-1, 1] -> (N, 3, H, W) uint8 at the native size; the network resizes it."""
    return to_uint8(images)[:, None].expand(-1, 3, -1, -1)


def to_upstream_inception_uint8(images: np.ndarray | torch.Tensor, wrap: bool = True) -> torch.Tensor:
    """(N, H, W) in [-1, 1] -> (N, 3, 299, 299) uint8 as upstream's KID/FID network receives it.

    Upstream resizes in float before the uint8 cast and truncates instead of rounding; its uint8 tensor then
    goes through torchmetrics' normalize=True, which multiplies by 255 again in uint8 arithmetic, so p becomes
    255 p mod 256 = (256 - p) mod 256 (`wrap`). Kept only to reproduce upstream's numbers: it inverts the
    tissue contrast and turns near-black pixels white.
    """
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    x = ((x + 1.0) / 2.0).clamp(0.0, 1.0)[:, None].repeat(1, 3, 1, 1)
    if x.shape[-2:] != (UPSTREAM_SIZE, UPSTREAM_SIZE):
        x = F.interpolate(x, size=(UPSTREAM_SIZE, UPSTREAM_SIZE), mode="bilinear", align_corners=False)
    p = (x * 255).to(torch.uint8)  # truncation toward zero, as upstream
    if wrap:
        p = ((256 - p.to(torch.int16)) % 256).to(torch.uint8)
    return p


def inception_input(images: np.ndarray | torch.Tensor, pixels: str = "fixed") -> torch.Tensor:
    """The uint8 batch the network sees under pixel path `pixels` (a key of PIXEL_PATHS)."""
    if pixels == "fixed":
        return to_inception_uint8(images)
    if pixels in ("upstream", "upstream_no_wrap"):
        return to_upstream_inception_uint8(images, wrap=pixels == "upstream")
    raise ValueError(f"pixel path {pixels!r}: expected one of {sorted(PIXEL_PATHS)}")


def feature_cache_key(images: np.ndarray, weights_sha256: str, pixels: str = "fixed", feature: str = "2048") -> str:
    """The cache name of a feature set: the pixels' content, the weights, the pixel path and the layer, so that
    features of another path or layer are never reused (pool3 keys are as before the options: old caches hold)."""
    arr = np.ascontiguousarray(images)
    layer = "" if feature == "2048" else f"/{feature}"
    key = hashlib.sha256(f"{arr.dtype}{arr.shape}{weights_sha256}{PIXEL_PATHS[pixels]}{layer}".encode())
    key.update(arr.tobytes())
    return key.hexdigest()[:32]


class InceptionFeatures:
    """torch-fidelity's TF-FID InceptionV3 ("inception-v3-compat"): 2048-d pool3 output by default.

    `pixels` picks the pixel path (PIXEL_PATHS; "fixed" unless upstream's numbers are to be reproduced) and
    `feature` the layer: "2048" (pool3) or "logits_unbiased" (1008-d, what upstream's memorisation used).
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        pixels: str = "fixed",
        feature: str = "2048",
    ):
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

        if pixels not in PIXEL_PATHS:
            raise ValueError(f"pixel path {pixels!r}: expected one of {sorted(PIXEL_PATHS)}")
        if feature not in FEATURE_DIMS:
            raise ValueError(f"Inception feature {feature!r}: expected one of {sorted(FEATURE_DIMS)}")
        self.weights = Path(weights) if weights else hub_checkpoints() / INCEPTION
        if not self.weights.exists():
            raise MissingInputError(f"{self.weights}: Inception weights missing; run slimdiff-weights first")
        self.weights_sha256 = sha256(self.weights)
        self.pixels, self.feature = pixels, feature
        self.net = (
            FeatureExtractorInceptionV3(
                "inception-v3-compat", [feature], feature_extractor_weights_path=str(self.weights)
            )
            .to(device, memory_format=torch.channels_last)  # a third faster on the CPU; features agree to ~1e-5
            .eval()
        )
        self.device, self.batch_size = device, batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray, progress: bool = False) -> np.ndarray:
        out = []
        for start in tqdm(range(0, len(images), self.batch_size), disable=not progress, desc="Inception", unit="batch"):
            batch = inception_input(images[start : start + self.batch_size], self.pixels).to(self.device)
            batch = batch.contiguous(memory_format=torch.channels_last)
            out.append(self.net(batch)[0].double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, FEATURE_DIMS[self.feature]))

    def cached(self, images: np.ndarray, cache_dir: str | Path | None, progress: bool = False) -> np.ndarray:
        """Features of `images`, reused when the same pixels were seen before (keyed by content, not name)."""
        if cache_dir is None:
            return self(images, progress)
        arr = np.ascontiguousarray(images)
        path = Path(cache_dir) / f"{feature_cache_key(arr, self.weights_sha256, self.pixels, self.feature)}.npy"
        if path.exists():
            return np.load(path)
        feats = self(arr, progress)
        write_npy(path, feats)
        return feats
