"""LPIPS between random unpaired real and synthetic slices (paper protocol: 1000 seeded pairs, VGG).

Upstream's protocol to the draw (LPIPSComputer.compute_pairwise; tests/test_metric_parity.py): pairs drawn with
replacement by NumPy's legacy generator seeded with the seed (np.random.seed + np.random.choice there), at most
n_real x n_synthetic of them, pixels clamped to [-1, 1], grey repeated to 3 channels, population std.
"""

from __future__ import annotations

import numpy as np
import torch

from slimdiff.errors import MissingInputError
from slimdiff.metrics.weights import LPIPS_FILES, hub_checkpoints


class LPIPSMetric:
    def __init__(self, net: str = "vgg", device: str = "cpu", batch_size: int = 32):
        import lpips

        trunk = hub_checkpoints() / LPIPS_FILES[net]
        if not trunk.exists():
            raise MissingInputError(f"{trunk}: LPIPS-{net} trunk weights missing; run slimdiff-weights first")
        self.model = lpips.LPIPS(net=net, verbose=False).to(device).eval()
        self.net, self.device, self.batch_size = net, device, batch_size

    @torch.no_grad()
    def distances(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """LPIPS of aligned pairs (N, H, W) in [-1, 1], grey repeated to 3 channels."""
        out = []
        for s in range(0, len(a), self.batch_size):
            x = (
                torch.as_tensor(np.asarray(a[s : s + self.batch_size], np.float32))
                .clamp(-1, 1)[:, None]
                .repeat(1, 3, 1, 1)
            )
            y = (
                torch.as_tensor(np.asarray(b[s : s + self.batch_size], np.float32))
                .clamp(-1, 1)[:, None]
                .repeat(1, 3, 1, 1)
            )
            out.append(self.model(x.to(self.device), y.to(self.device)).flatten().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def unpaired(
        self, real: np.ndarray, fake: np.ndarray, n_pairs: int = 1000, seed: int = 42, min_images: int = 1
    ) -> dict:
        """Mean and std over random pairs; undefined with fewer than `min_images` on a side (upstream: 5 per
        z-bin)."""
        if min(len(real), len(fake)) < min_images:
            why = (
                f"fewer than {min_images} images on a side ({len(real)} real, {len(fake)} synthetic)"
                if min_images > 1
                else f"no {'real' if len(real) == 0 else 'synthetic'} images to pair"
            )
            return {
                "lpips_mean": float("nan"),
                "lpips_std": float("nan"),
                "lpips_pairs": 0,
                "null_reasons": {"lpips_mean": why, "lpips_std": why},
            }
        i, j = pair_indices(len(real), len(fake), n_pairs, seed)
        d = self.distances(real[i], fake[j])
        return {
            "lpips_mean": float(d.mean()),
            "lpips_std": float(d.std(ddof=0)),  # population std over the pairs, as the paper's tables
            "lpips_pairs": len(d),
        }


def pair_indices(n_real: int, n_fake: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random unpaired (real, synthetic) index pairs, drawn with replacement: the paper's LPIPS protocol, with
    upstream's generator and cap (min(n_pairs, n_real * n_fake)), so the same seed gives upstream's pairs."""
    rng = np.random.RandomState(seed)
    n = min(n_pairs, n_real * n_fake)
    return rng.choice(n_real, n, replace=True), rng.choice(n_fake, n, replace=True)
