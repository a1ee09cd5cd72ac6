"""Time of the metric stage per step (run on demand, not a test).

    python benchmarks/metrics_throughput.py [--n 3000] [--size 160] [--device auto] [--out FILE.json]

Scores N synthetic against N real slices (random smooth brain-like images with lesion blobs; the content does
not change the cost): Inception features once per set, KID (100 subsets), FID, LPIPS (1000 pairs, VGG), and
MMD-MF (regionprops + 100 subsets). The stage should be dominated by one Inception pass per image.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from slimdiff import provenance
from slimdiff.device import pick_device
from slimdiff.metrics.features import InceptionFeatures
from slimdiff.metrics.kid_fid import fid, kid
from slimdiff.metrics.lpips_metric import LPIPSMetric
from slimdiff.metrics.morphology import lesion_features, mmd_mf
from slimdiff.metrics.weights import ensure_weights

REPO = Path(__file__).resolve().parents[1]


def fake_set(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    images = np.empty((n, size, size), np.float32)
    masks = -np.ones((n, size, size), np.float32)
    for i in range(n):
        brain = ((yy - 0.5) / 0.4) ** 2 + ((xx - 0.5) / 0.33) ** 2 < 1
        images[i] = np.where(brain, 0.3 * np.sin(xx * g.uniform(10, 30)) + 0.1 * g.normal(size=(size, size)), -1)
        cy, cx, r = g.uniform(0.3, 0.7), g.uniform(0.3, 0.7), g.uniform(0.02, 0.06)
        masks[i][((yy - cy) ** 2 + (xx - cx) ** 2) < r**2] = 1
    return images, masks


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "metrics_throughput.json"))
    args = p.parse_args()
    device = pick_device(args.device)
    ensure_weights(("vgg",))
    real, real_m = fake_set(args.n, args.size, 0)
    fake, fake_m = fake_set(args.n, args.size, 1)
    times = {}

    def timed(name, fn):
        t = time.perf_counter()
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times[name] = round(time.perf_counter() - t, 2)
        print(name, times[name], "s", flush=True)
        return out

    inception = InceptionFeatures(device=device, batch_size=64)
    fr = timed("inception_real", lambda: inception(real))
    ff = timed("inception_synthetic", lambda: inception(fake))
    timed("kid", lambda: kid(fr, ff, 100, 1000))
    timed("fid", lambda: fid(fr, ff))
    lp = LPIPSMetric("vgg", device=device)
    timed("lpips_1000_pairs", lambda: lp.unpaired(real, fake, 1000))
    lr = timed("regionprops_real", lambda: lesion_features(real_m))
    lf = timed("regionprops_synthetic", lambda: lesion_features(fake_m))
    timed("mmd_mf", lambda: mmd_mf(lr, lf))
    total = sum(times.values())
    result = {
        "n_per_set": args.n,
        "size": args.size,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "seconds": times,
        "total_seconds": round(total, 2),
        "inception_share": round((times["inception_real"] + times["inception_synthetic"]) / total, 3),
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["seconds"]), "inception share", result["inception_share"])


if __name__ == "__main__":
    main()
