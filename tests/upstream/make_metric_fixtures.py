"""Build the metric parity fixtures with upstream's own metric code (run in `make upstream-env`'s environment).

    .upstream-venv/bin/python tests/upstream/make_metric_fixtures.py tests/data/upstream/metrics

Mask morphology (MMD-MF): seeded masks in upstream's format ({-1, +1} real masks; continuous synthetic masks,
binarised by upstream at > 0) go through upstream's MaskMorphologyDistanceComputer with its defaults (min lesion
5 px, subset 500, 100 subsets, degree 3, z-scored with the real statistics), seeded as upstream's
run_mask_metrics seeds it (np.random.seed(42) right before the computation). Written: the masks, upstream's
per-lesion feature matrices, MMD-MF mean / std / subset size and the per-feature Wasserstein distances.

Regime A statistics (Table 1): seeded per-replica metric tables through upstream's within_group_comparison and
between_group_comparison (scikit-posthocs installed, as the paper's runs had it).
tests/test_metric_parity.py computes the same with this project's functions and must match. Nothing here is
imported by the pipeline; the outputs are committed as test data.
"""

from __future__ import annotations

import argparse
import json
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path)
    out_dir = p.parse_args().out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    mask_morphology(out_dir)
    regime_a(out_dir)
    lpips_protocol(out_dir)


if __name__ == "__main__":
    main()
