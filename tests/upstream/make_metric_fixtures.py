"""Build the metric parity fixtures with upstream's own metric code (run in `make upstream-env`'s environment).

    .upstream-venv/bin/python tests/upstream/make_metric_fixtures.py tests/data/upstream/metrics

Mask morphology (MMD-MF): seeded masks in upstream's format ({-1, +1} real masks; continuous synthetic masks,
binarised by upstream at > 0) go through upstream's MaskMorphologyDistanceComputer with its defaults (min lesion
5 px, subset 500, 100 subsets, degree 3, z-scored with the real statistics), seeded as upstream's
run_mask_metrics seeds it (np.random.seed(42) right before the computation). Written: the masks, upstream's
per-lesion feature matrices, MMD-MF mean / std / subset size and the per-feature Wasserstein distances.

Regime A statistics (Table 1): seeded per-replica metric tables through upstream's within_group_comparison and
between_group_comparison (scikit-posthocs installed, as the paper's runs had it).

Tau sweep: the morphology fixture's synthetic masks re-binarised at each tau to {-1, +1}, np.random.seed(42) before
each of upstream's MaskMorphologyDistanceComputer.compute calls, real features extracted once (upstream's
posthoc/tau_sensitivity.py procedure, evaluation.md 2.7; that driver is not in the wheel, its computer is).

KID / FID (Inception, torchmetrics as upstream calls it): upstream's KIDComputer, FIDComputer and
compute_per_zbin_kid on 10 + 10 small images (every KID subset is then the whole set, so upstream's unseeded
subset draws cannot change the value), the SHA-256 of the uint8 batches its network receives (captured with a
forward pre-hook) and the first columns of its features; the subset size its guard picks for 25 vs 22 images;
upstream's InceptionFeatureExtractor (feature nearest-neighbour / memorisation) features of the same images.
tests/test_metric_parity.py computes the same with this project's functions and must match. Nothing here is
imported by the pipeline; the outputs are committed as test data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from src.diffusion.scripts.similarity_metrics.metrics.fid import FIDComputer
from src.diffusion.scripts.similarity_metrics.metrics.kid import (
    InceptionFeatureExtractor,
    KIDComputer,
    compute_per_zbin_kid,
)
from src.diffusion.scripts.similarity_metrics.metrics.lpips import LPIPSComputer, compute_per_zbin_lpips
from src.diffusion.scripts.similarity_metrics.metrics.mask_morphology import MaskMorphologyDistanceComputer
from src.diffusion.scripts.similarity_metrics.statistics import comparison

SIZE = 40
SEED = 42  # upstream's run_mask_metrics: np.random.seed(42) before each MMD computation


def blob_masks(n: int, rng: np.random.Generator, elongation: float, continuous: bool) -> np.ndarray:
    """n masks with one to three elliptic lesions each (some masks empty), {-1, +1} or continuous in [-1, 1]."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks = np.full((n, SIZE, SIZE), -1.0, np.float32)
    for i in range(n):
        for _ in range(rng.integers(0, 4)):
            cy, cx = rng.uniform(8, SIZE - 8, 2)
            a, b = rng.uniform(2.0, 5.0), rng.uniform(2.0, 5.0) * elongation
            theta = rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(theta) + (xx - cx) * np.sin(theta)
            v = -(yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta)
            inside = (u / a) ** 2 + (v / b) ** 2
            masks[i] = np.maximum(masks[i], np.clip(1.5 - inside, -1, 1) if continuous else np.where(inside < 1, 1, -1))
    return masks


def mask_morphology(out_dir: Path) -> None:
    rng = np.random.default_rng(7)
    real = blob_masks(60, rng, elongation=1.0, continuous=False)
    synth = blob_masks(90, rng, elongation=1.6, continuous=True)
    computer = MaskMorphologyDistanceComputer()
    real_f = computer.extract_features(real, show_progress=False)
    synth_f = computer.extract_features(synth, show_progress=False)
    np.random.seed(SEED)
    result, _, _ = computer.compute(real, synth, show_progress=False, real_features=real_f, synth_features=synth_f)
    wasserstein = computer.compute_per_feature_wasserstein(real_features=real_f, synth_features=synth_f)
    np.savez_compressed(
        out_dir / "mask_morphology.npz",
        real_masks=real,
        synth_masks=synth,
        real_features=real_f,
        synth_features=synth_f,
    )
    record = {
        "seed": SEED,
        "feature_names": computer.feature_extractor.feature_names,
        "mmd_mf_mean": result.value,
        "mmd_mf_std": result.std,
        "subset_size": result.metadata["subset_size"],
        "num_subsets": result.metadata["num_subsets"],
        "n_real_lesions": result.metadata["n_real_lesions"],
        "n_synth_lesions": result.metadata["n_synth_lesions"],
        "wasserstein": wasserstein,
        "made_with": {name: metadata.version(name) for name in ("slim-diff", "numpy", "scipy", "scikit-image")},
    }
    (out_dir / "mask_morphology.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"MMD-MF {result.value:.6f} +- {result.std:.6f} (subset {record['subset_size']})")


def regime_a(out_dir: Path) -> None:
    """Table 1's statistics: 3 prediction types x 3 Lp x 5 replicas of a global metric, upstream's
    within_group_comparison (Friedman + Nemenyi) and between_group_comparison (Kruskal-Wallis + Dunn BH, Cliff's
    delta). Two frames: one whose tests are significant (so upstream runs its post-hoc tests), one with ties."""
    assert comparison.HAS_POSTHOCS, "scikit-posthocs is needed for upstream's Nemenyi and Dunn tests"
    rng = np.random.default_rng(11)
    frames = {}
    rows = []
    for pred, centre in (("epsilon", 0.12), ("velocity", 0.07), ("x0", 0.04)):
        for lp, shift in ((1.5, 0.0), (2.0, 0.004), (2.5, 0.012)):
            for rep in range(5):
                rows.append((pred, lp, rep, centre + shift + rng.normal(0, 0.002)))
    frames["separated"] = pd.DataFrame(rows, columns=["prediction_type", "lp_norm", "replica_id", "kid_global"])
    tied = frames["separated"].copy()
    tied["kid_global"] = np.round(tied["kid_global"] + rng.normal(0, 0.03, len(tied)), 2)  # overlapping, with ties
    frames["tied"] = tied
    record = {}
    for name, frame in frames.items():
        within = comparison.within_group_comparison(frame)
        between = comparison.between_group_comparison(frame)
        record[name] = {
            "rows": frame.to_dict(orient="list"),
            "within": {
                r["group"]: {
                    "friedman_stat": r["friedman_stat"],
                    "p_value": r["p_value"],
                    "posthoc": r["posthoc_comparisons"],
                }
                for r in within.to_dict(orient="records")
            },
            "between": {
                "kruskal_stat": between["kruskal_stat"],
                "p_value": between["p_value"],
                "posthoc": between["posthoc_pvalues"],
                "cliffs_delta": {k: v["cliffs_delta"] for k, v in between["effect_sizes"].items()},
            },
        }
    record["made_with"] = {name: metadata.version(name) for name in ("slim-diff", "scipy", "scikit-posthocs")}
    (out_dir / "regime_a.json").write_text(json.dumps(record, indent=2) + "\n")
    print("regime A:", {n: record[n]["between"]["p_value"] for n in frames})


def lpips_protocol(out_dir: Path) -> None:
    """Upstream's LPIPS protocol (lpips package, VGG): random unpaired pairs drawn with replacement after
    np.random.seed(seed), population std; per z-bin with seed + z-bin and NaN below 5 images on a side. The
    VGG trunk comes from $TORCH_HOME (point it at this project's .torch_home, filled by slimdiff-weights)."""
    rng = np.random.default_rng(5)
    real = np.clip(rng.normal(0, 0.5, (14, 32, 32)), -1.2, 1.2).astype(np.float32)  # some values outside [-1, 1]
    synth = np.clip(rng.normal(0.1, 0.6, (17, 32, 32)), -1.2, 1.2).astype(np.float32)
    real_z, synth_z = np.arange(14) % 3, np.r_[np.zeros(8), np.ones(6), np.full(3, 2)].astype(int)  # bin 2: 3 synth
    computer = LPIPSComputer(net="vgg", device="cpu", batch_size=8)
    whole = computer.compute_pairwise(real, synth, n_pairs=40, seed=SEED, show_progress=False)
    small = computer.compute_pairwise(real[:3], synth[:4], n_pairs=40, seed=7, show_progress=False)  # 12 pairs at most
    per_zbin = compute_per_zbin_lpips(real, real_z, synth, synth_z, n_pairs_per_zbin=20, device="cpu", seed=SEED)
    np.savez_compressed(out_dir / "lpips.npz", real=real, synth=synth, real_z=real_z, synth_z=synth_z)
    record = {
        "whole": {"seed": SEED, "n_pairs": 40, "mean": whole.value, "std": whole.std},
        "small": {"seed": 7, "n_pairs": 40, "mean": small.value, "std": small.std},
        "per_zbin": {"seed": SEED, "n_pairs": 20, "rows": per_zbin},
        "made_with": {name: metadata.version(name) for name in ("slim-diff", "lpips", "torch")},
    }
    (out_dir / "lpips.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"LPIPS {whole.value:.6f} +- {whole.std:.6f}")


TORCH_THREADS = 1
TAUS = (-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2, 0.3)  # upstream's default sweep


def tau_sweep(out_dir: Path) -> None:
    """MMD-MF of the morphology fixture's masks as the synthetic threshold moves (real masks stay at > 0)."""
    arrays = np.load(out_dir / "mask_morphology.npz")
    real, synth = arrays["real_masks"], arrays["synth_masks"]
    computer = MaskMorphologyDistanceComputer()
    real_f = computer.extract_features(real, show_progress=False)
    rows = []
    for tau in TAUS:
        binary = np.where(synth > tau, 1, -1).astype(np.int8)
        synth_f = computer.extract_features(binary, show_progress=False)
        np.random.seed(SEED)
        result, _, _ = computer.compute(real, binary, show_progress=False, real_features=real_f, synth_features=synth_f)
        rows.append(
            {
                "tau": tau,
                "mmd_mf_mean": result.value,
                "mmd_mf_std": result.std,
                "n_lesions": int(len(synth_f)),
                "subset_size": result.metadata.get("subset_size"),
            }
        )
    record = {"seed": SEED, "rows": rows, "made_with": {"slim-diff": metadata.version("slim-diff")}}
    (out_dir / "tau_sweep.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    print("tau sweep:", [round(r["mmd_mf_mean"], 4) for r in rows])


def inception_images(n: int, rng: np.random.Generator, size: int, noisy_background: bool) -> np.ndarray:
    """Brain-like slices in [-1, 1]: an ellipse of textured tissue on a background of exactly -1, with a dark rim
    and (synthetic) near-black background noise: the pixels upstream's uint8 wrap-around turns white."""
    yy, xx = np.mgrid[:size, :size] / (size - 1) - 0.5
    out = np.full((n, size, size), -1.0, np.float32)
    for i in range(n):
        ry, rx = rng.uniform(0.3, 0.45, 2)
        r = (yy / ry) ** 2 + (xx / rx) ** 2
        tissue = 0.3 * np.sin(rng.uniform(4, 12) * yy + rng.uniform(0, 6)) + rng.normal(0, 0.15, (size, size))
        out[i] = np.where(r < 1, np.clip(tissue, -0.9, 1), -1.0)
        out[i][(r >= 0.85) & (r < 1)] = -0.97  # a dark rim
        if noisy_background:
            out[i] = np.where(r >= 1, -1 + np.abs(rng.normal(0, 0.006, (size, size))), out[i])
    return out.astype(np.float16).astype(np.float32)  # stored as float16, like upstream's replicas


class NetworkInputs:
    """Forward pre-hook: the SHA-256 and the feature rows of everything a torchmetrics Inception sees."""

    def __init__(self, module: torch.nn.Module):
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []
        module.register_forward_pre_hook(lambda _m, args: self.inputs.append(args[0].detach().cpu().clone()))
        module.register_forward_hook(lambda _m, _a, out: self.outputs.append(out.detach().cpu().clone()))

    def sha256(self, start: int, stop: int) -> str:
        return hashlib.sha256(torch.cat(self.inputs[start:stop]).numpy().tobytes()).hexdigest()


def inception_metrics(out_dir: Path) -> None:
    """Upstream's KID, FID and per-z-bin KID; its pixels (hashes) and features (first columns)."""
    import torchmetrics.image.fid as tm_fid

    # Upstream's float resize rounds differently in the last bit with the thread count, and the wrap-around turns
    # such a flip at a truncation boundary (p 0 <-> 1) into black <-> white: one thread, as the tests run.
    torch.set_num_threads(TORCH_THREADS)
    rng = np.random.default_rng(3)
    real = inception_images(10, rng, 32, noisy_background=False)
    synth = inception_images(10, rng, 32, noisy_background=True)
    seen = []  # every NoTrainInceptionV3 torchmetrics builds gets the hooks (the metric builds its own network)
    original_init = tm_fid.NoTrainInceptionV3.__init__

    def hooked_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        seen.append(NetworkInputs(self))

    tm_fid.NoTrainInceptionV3.__init__ = hooked_init
    torch.manual_seed(SEED)
    kid = KIDComputer(device="cpu", batch_size=10).compute(real, synth, show_progress=False)
    fid = FIDComputer(device="cpu", batch_size=10).compute(real, synth, show_progress=False)
    guard = KIDComputer(num_subsets=2, device="cpu", batch_size=25)
    guard_size = guard.compute(np.resize(real, (25, 32, 32)), np.resize(synth, (22, 32, 32)), show_progress=False)
    tm_fid.NoTrainInceptionV3.__init__ = original_init
    kid_net, fid_net = seen[0], seen[1]
    assert len(kid_net.inputs) == 2 and len(fid_net.inputs) == 2, "one batch per side expected"
    # per z-bin: bin 0 = the 10 + 10 images above; bin 1 under 10 on both sides, bin 2 under 10 synthetic only
    real_z = np.r_[np.zeros(10), np.ones(6), np.full(12, 2)].astype(int)
    synth_z = np.r_[np.zeros(10), np.ones(4), np.full(7, 2)].astype(int)
    real_all = np.concatenate([real, np.resize(real, (18, 32, 32))])
    synth_all = np.concatenate([synth, np.resize(synth, (11, 32, 32))])
    torch.manual_seed(SEED)
    per_zbin = compute_per_zbin_kid(real_all, real_z, synth_all, synth_z, device="cpu", batch_size=10)
    nn_feats = InceptionFeatureExtractor(device="cpu", batch_size=10).extract_features(real, show_progress=False)
    head = 16
    np.savez_compressed(
        out_dir / "inception.npz",
        real=real.astype(np.float16),
        synth=synth.astype(np.float16),
        real_pool3_head=torch.cat(kid_net.outputs[:1]).numpy()[:, :head],
        synth_pool3_head=torch.cat(kid_net.outputs[1:2]).numpy()[:, :head],
        real_nn_logits_head=nn_feats.numpy()[:, :head],
        real_nn_logits_norm=np.linalg.norm(nn_feats.numpy().astype(np.float64), axis=1),
    )
    record = {
        "kid": {"mean": kid.value, "std": kid.std, "subset_size": kid.metadata["subset_size"]},
        "fid": fid.value,
        "guard": {"n_real": 25, "n_synth": 22, "subset_size": guard_size.metadata["subset_size"]},
        "network_input_sha256": {"real": kid_net.sha256(0, 1), "synth": kid_net.sha256(1, 2)},
        "network_input_shape": list(kid_net.inputs[0].shape),
        "fid_network_input_equal": fid_net.sha256(0, 2) == kid_net.sha256(0, 2),
        "per_zbin": per_zbin,
        "nn_feature_dim": int(nn_feats.shape[1]),
        "torch_threads": TORCH_THREADS,
        "made_with": {
            name: metadata.version(name) for name in ("slim-diff", "torchmetrics", "torch-fidelity", "torch")
        },
    }
    (out_dir / "inception.json").write_text(json.dumps(record, indent=2, default=float) + "\n")
    print(f"KID {kid.value:.6f} +- {kid.std:.2e}, FID {fid.value:.4f}, per z-bin {[r['kid'] for r in per_zbin]}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    out_dir = p.parse_args().out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_morphology(out_dir)
    regime_a(out_dir)
    lpips_protocol(out_dir)
    tau_sweep(out_dir)
    inception_metrics(out_dir)


if __name__ == "__main__":
    main()
