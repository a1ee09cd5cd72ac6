"""LPIPS between random unpaired real and synthetic slices (paper protocol: 1000 seeded pairs, VGG)."""

from __future__ import annotations

import numpy as np
import torch

from slimdiff.metrics.weights import LPIPS_FILES, hub_checkpoints


class LPIPSMetric:
    def __init__(self, net: str = "vgg", device: str = "cpu", batch_size: int = 32):
        import lpips

        trunk = hub_checkpoints() / LPIPS_FILES[net]
        if not trunk.exists():
            raise FileNotFoundError(f"{trunk}: LPIPS-{net} trunk weights missing; run slimdiff-weights first")
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
            return {"lpips_mean": float("nan"), "lpips_std": float("nan"), "lpips_pairs": 0}
        rng = np.random.default_rng(seed)
        i = rng.integers(0, len(real), n_pairs)
        j = rng.integers(0, len(fake), n_pairs)
        d = self.distances(real[i], fake[j])
        return {
            "lpips_mean": float(d.mean()),
            "lpips_std": float(d.std(ddof=0)),  # population std over the pairs, as the paper's tables
            "lpips_pairs": int(n_pairs),
        }
