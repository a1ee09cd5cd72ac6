"""LPIPS between random unpaired real and synthetic slices (paper protocol: 1000 seeded pairs, VGG)."""

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
            x = torch.as_tensor(np.asarray(a[s : s + self.batch_size], np.float32))[:, None].repeat(1, 3, 1, 1)
            y = torch.as_tensor(np.asarray(b[s : s + self.batch_size], np.float32))[:, None].repeat(1, 3, 1, 1)
            out.append(self.model(x.to(self.device), y.to(self.device)).flatten().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    def unpaired(self, real: np.ndarray, fake: np.ndarray, n_pairs: int = 1000, seed: int = 0) -> dict:
        if min(len(real), len(fake)) == 0:
            empty = "real" if len(real) == 0 else "synthetic"
            why = f"no {empty} images to pair"
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
            "lpips_pairs": int(n_pairs),
        }


def pair_indices(n_real: int, n_fake: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random unpaired (real, synthetic) index pairs, drawn with replacement: the paper's LPIPS protocol."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_real, n_pairs), rng.integers(0, n_fake, n_pairs)
