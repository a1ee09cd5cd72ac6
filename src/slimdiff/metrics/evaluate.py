"""The metrics of one run (and fold) against the real test set, the real-vs-real baseline, and the summary.

Regime of the paper's Table 1: every replica is scored separately against the fold's real test slices
(KID, FID, LPIPS, MMD-MF), and the table reports mean +/- std over replicas. Per-z-bin KID and LPIPS pool
the replicas, with the KID subset size capped by the bin's size. Inception features are extracted once per
image set and cached by content, so global and per-z-bin numbers (and the baseline) share them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from slimdiff import provenance
from slimdiff.data.cache import load_cache
from slimdiff.data.splits import fold_membership
from slimdiff.generation.outputs import read_samples
from slimdiff.io import write_json, write_text
from slimdiff.metrics import stats
from slimdiff.metrics.features import InceptionFeatures
from slimdiff.metrics.kid_fid import fid, kid
from slimdiff.metrics.lpips_metric import LPIPSMetric
from slimdiff.metrics.morphology import lesion_features, mmd_mf, tau_sweep, wasserstein_per_feature

log = logging.getLogger(__name__)

METRICS = ("kid", "fid", "lpips", "mmd_mf")


def real_split(cache_dir: str | Path, fold: int, role: str) -> dict[str, np.ndarray]:
    cache = load_cache(cache_dir)
    rows = cache.index[fold_membership(cache.index, fold) == role]
    r = rows["row"].to_numpy()
    return {"images": np.asarray(cache.images[r]), "masks": np.asarray(cache.masks[r], np.float32),
            "z_bin": rows["z_bin"].to_numpy(), "class": rows["class"].to_numpy()}


def load_replicas(sample_files: list[str | Path]) -> dict[int, dict[str, np.ndarray]]:
    """zbinNN.npz files of one run -> {replica: images, masks, z_bin, class} (float32)."""
    parts: dict[int, list[dict]] = {}
    for path in sample_files:
        s = read_samples(path)
        parts.setdefault(int(s["meta"]["replica"]), []).append(s)
    out = {}
    for r, items in sorted(parts.items()):
        out[r] = {k: np.concatenate([np.asarray(i[k], np.float32 if k in ("images", "masks") else None)
                                     for i in items]) for k in ("images", "masks", "z_bin", "class")}
    return out


def compare_sets(real: dict, fake: dict, real_feats: np.ndarray, fake_feats: np.ndarray, lp: LPIPSMetric,
                 cfg: dict) -> dict:
    """All global metrics of one synthetic set against one real set."""
    out = kid(real_feats, fake_feats, cfg["kid_subsets"], cfg["kid_subset_size"], cfg["seed"])
    out["fid"] = fid(real_feats, fake_feats)
    out.update(lp.unpaired(real["images"], fake["images"], cfg["lpips_pairs"], cfg["seed"]))
    real_l, fake_l = lesion_features(real["masks"], 0.0), lesion_features(fake["masks"], cfg["tau"])
    out.update(mmd_mf(real_l, fake_l, cfg["mmd_subsets"], cfg["mmd_subset_size"], cfg["seed"]))
    return out


def evaluate_run(
    cache_dir: str | Path,
    sample_files: list[str | Path],
    out_dir: str | Path,
    fold: int,
    cfg: dict,
    run: str,
    device: str = "cpu",
    weights: dict | None = None,
) -> dict:
    """metrics.json (DVC metrics), per_zbin.csv, morphology.csv and tau_sweep.csv for one run and fold."""
    out_dir = Path(out_dir)
    feature_cache = Path(cfg["feature_cache"]) if cfg.get("feature_cache") else None
    inception = InceptionFeatures(device=device, batch_size=cfg["batch_size"])
    lp = LPIPSMetric(cfg["lpips_net"], device=device)
    real = real_split(cache_dir, fold, "test")
    real_feats = inception.cached(real["images"], feature_cache)
    replicas = load_replicas(sample_files)
    if not replicas:
        raise ValueError(f"run {run}: no sample files given")

    per_replica, morph_rows, fake_feats = [], [], {}
    real_lesions = lesion_features(real["masks"], 0.0)
    for r, fake in replicas.items():
        fake_feats[r] = inception.cached(fake["images"], feature_cache)
        m = compare_sets(real, fake, real_feats, fake_feats[r], lp, cfg)
        per_replica.append({"replica": r, "n_synthetic": len(fake["images"]), **m})
        w = wasserstein_per_feature(real_lesions, lesion_features(fake["masks"], cfg["tau"]))
        morph_rows.append({"replica": r, **w})
        log.info("%s fold %d replica %d: KID %.4f FID %.2f LPIPS %.4f MMD-MF %.4f", run, fold, r, m["kid_mean"],
                 m["fid"], m["lpips_mean"], m["mmd_mf_mean"])

    # Per z-bin: replicas pooled; subset size capped by the bin.
    pooled = {k: np.concatenate([f[k] for f in replicas.values()]) for k in ("images", "masks", "z_bin")}
    pooled_feats = np.concatenate([fake_feats[r] for r in replicas])
    zrows = []
    for b in sorted(set(real["z_bin"].tolist()) | set(pooled["z_bin"].tolist())):
        ri, fi = real["z_bin"] == b, pooled["z_bin"] == b
        k = kid(real_feats[ri], pooled_feats[fi], cfg["zbin_kid_subsets"], cfg["kid_subset_size"], cfg["seed"])
        lpz = lp.unpaired(real["images"][ri], pooled["images"][fi], cfg["zbin_lpips_pairs"], cfg["seed"])
        zrows.append({"z_bin": b, "n_real": int(ri.sum()), "n_synthetic": int(fi.sum()), **k, **lpz})
    sweep = tau_sweep(real["masks"], pooled["masks"], seed=cfg["seed"])

    summary = {}
    for name, key in (("kid", "kid_mean"), ("fid", "fid"), ("lpips", "lpips_mean"), ("mmd_mf", "mmd_mf_mean")):
        mean, std = stats.mean_std([p[key] for p in per_replica])
        summary[name] = {"mean": mean, "std": std}
    result = {
        "run": run,
        "fold": fold,
        "n_real_test": len(real["images"]),
        "replicas": per_replica,
        "summary": summary,
        "settings": cfg,
        "weights": weights or {},
        "inception_weights_sha256": inception.weights_sha256,
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
    }
    write_text(out_dir / "per_zbin.csv", pd.DataFrame(zrows).to_csv(index=False))
    write_text(out_dir / "morphology.csv", pd.DataFrame(morph_rows).to_csv(index=False))
    write_text(out_dir / "tau_sweep.csv", sweep.to_csv(index=False))
    write_json(out_dir / "metrics.json", result)
    return result


def evaluate_baseline(cache_dir: str | Path, out_json: str | Path, fold: int, cfg: dict, device: str = "cpu",
                      weights: dict | None = None) -> dict:
    """Real vs real: the fold's training slices scored against its test slices, the reference line."""
    feature_cache = Path(cfg["feature_cache"]) if cfg.get("feature_cache") else None
    inception = InceptionFeatures(device=device, batch_size=cfg["batch_size"])
    lp = LPIPSMetric(cfg["lpips_net"], device=device)
    test, train = real_split(cache_dir, fold, "test"), real_split(cache_dir, fold, "train")
    m = compare_sets(test, train, inception.cached(test["images"], feature_cache),
                     inception.cached(train["images"], feature_cache), lp, cfg)
    result = {"fold": fold, "reference": "test", "compared": "train", "n_test": len(test["images"]),
              "n_train": len(train["images"]), **m, "settings": cfg, "weights": weights or {},
              "inception_weights_sha256": inception.weights_sha256, "versions": provenance.versions(),
              "created": provenance.timestamp()}
    write_json(out_json, result)
    return result


def memorization(train_feats: np.ndarray, test_feats: np.ndarray, fake_feats: np.ndarray) -> dict:
    """Nearest-neighbour distances to the training set: synthetic vs held-out real.

    ratio = median NN distance of synthetic samples / median NN distance of test samples; well below 1
    suggests copies of training slices. Also the share of synthetic samples closer to a training slice than
    the 5th percentile of test-to-train distances.
    """
    def nn(a: np.ndarray) -> np.ndarray:
        d2 = (a**2).sum(1)[:, None] + (train_feats**2).sum(1)[None, :] - 2 * a @ train_feats.T
        return np.sqrt(np.maximum(d2.min(1), 0))

    d_fake, d_test = nn(fake_feats), nn(test_feats)
    return {"nn_ratio": float(np.median(d_fake) / max(np.median(d_test), 1e-12)),
            "frac_below_test_p5": float((d_fake < np.percentile(d_test, 5)).mean()),
            "median_nn_synthetic": float(np.median(d_fake)), "median_nn_test": float(np.median(d_test))}


def aggregate(metric_files: list[str | Path], baseline_file: str | Path, out_json: str | Path, out_csv: str | Path,
              weights: dict | None = None) -> dict:
    """Every run's metrics, the baseline, and the statistics across configurations -> summary.json + CSV."""
    import json

    runs = [json.loads(Path(p).read_text()) for p in metric_files]
    baseline = json.loads(Path(baseline_file).read_text())
    rows = []
    for m in runs:
        for rep in m["replicas"]:
            rows.append({"run": m["run"], "fold": m["fold"], "prediction": m["run"].split("_")[0],
                         "replica": rep["replica"], "kid": rep["kid_mean"], "fid": rep["fid"],
                         "lpips": rep["lpips_mean"], "mmd_mf": rep["mmd_mf_mean"]})
    table = pd.DataFrame(rows)
    tests = {}
    for metric in METRICS:
        by_pred = {p: g[metric].tolist() for p, g in table.groupby("prediction")}
        tests[metric] = {"between_predictions": stats.kruskal_dunn(by_pred), "within_prediction": {}}
        for p, g in table.groupby("prediction"):
            wide = g.pivot_table(index="replica", columns="run", values=metric)
            tests[metric]["within_prediction"][p] = stats.friedman_nemenyi(wide)
        preds = sorted(by_pred)
        tests[metric]["cliffs_delta"] = [
            {"a": a, "b": b, "delta": stats.cliffs_delta(by_pred[a], by_pred[b])}
            for i, a in enumerate(preds) for b in preds[i + 1:]
        ]
    summary = {
        "runs": {f"{m['run']}/fold{m['fold']}": m["summary"] for m in runs},
        "baseline": {k: baseline[v] for k, v in (("kid", "kid_mean"), ("fid", "fid"), ("lpips", "lpips_mean"),
                                                  ("mmd_mf", "mmd_mf_mean"))},
        "statistics": tests,
        "weights_sha256": {k: v["sha256"] for k, v in (weights or {}).items()},
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
    }
    write_json(out_json, summary)
    write_text(out_csv, table.to_csv(index=False))
    return summary
