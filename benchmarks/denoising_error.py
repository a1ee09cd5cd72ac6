"""How well does a trained model denoise real slices at each noise level? Behind docs/results/levers.md.

    python benchmarks/denoising_error.py results/runs/*/fold0/train/model.pt \
        [--cache results/cache] [--fold 0] [--out results/benchmarks/denoising_error.json]

For each model and timestep t, the fold's real test slices are noised to x_t (seeded noise, the same for every
model) and the network's x0 estimate (clamped to [-1, 1], self-conditioning input zero) is compared with the
clean slice: mean absolute error of the image channel. Beside it, the error of what the network was given,
the rescaled input x_t / sqrt(abar_t). A network that is worse than its own input at small t smooths away
detail the noise had not yet hidden, and every late sampling step then blurs the sample again.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from slimdiff import provenance
from slimdiff.data.slices import token
from slimdiff.io import write_json
from slimdiff.metrics.evaluate import real_split
from slimdiff.model.file import load_denoiser

TIMESTEPS = (0, 10, 20, 40, 80, 120, 200, 400, 600)


@torch.no_grad()
def denoising_error(net, diffusion, x0: torch.Tensor, tokens: torch.Tensor, timesteps, seed: int = 0) -> list[dict]:
    """Per t: image-channel MAE of the network's x0 estimate and of the rescaled noisy input."""
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(seed))
    rows = []
    for t in timesteps:
        tt = torch.full((len(x0),), int(t), dtype=torch.long)
        x_t = diffusion.q_sample(x0, tt, eps)
        sc = torch.zeros_like(x0) if getattr(net, "self_cond", False) else None
        est = diffusion.x0_from_output(net(x_t, tt, tokens, sc), x_t, tt).clamp(-1, 1)
        rescaled = x_t / diffusion.alphas_cumprod[tt].sqrt().view(-1, 1, 1, 1).to(x_t)
        rows.append(
            {
                "t": int(t),
                "estimate_mae": float((est[:, 0] - x0[:, 0]).abs().mean()),
                "input_mae": float((rescaled[:, 0] - x0[:, 0]).abs().mean()),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--cache", type=Path, default=Path("results/cache"))
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--timesteps", type=int, nargs="+", default=list(TIMESTEPS))
    ap.add_argument("--out", type=Path, default=Path("results/benchmarks/denoising_error.json"))
    args = ap.parse_args()
    real = real_split(args.cache, args.fold, "test")
    x0 = torch.from_numpy(np.stack([real["images"], real["masks"]], axis=1)).float()
    result = {}
    for path in args.models:
        net, diffusion, payload = load_denoiser(path)
        tokens = torch.as_tensor(token(real["z_bin"], real["class"], payload["data_info"]["z_bins"])).long()
        rows = denoising_error(net, diffusion, x0, tokens, args.timesteps)
        result[str(path)] = rows
        print(path, " ".join(f"t{r['t']}: {r['estimate_mae']:.4f} ({r['input_mae']:.4f})" for r in rows), flush=True)
    write_json(
        args.out,
        {"fold": args.fold, "n_slices": len(x0), "models": result, "versions": provenance.versions()},
    )


if __name__ == "__main__":
    main()
