"""What a run's protocol changes in its scoring: Regime B's merged pool, MMD-PL per scored set, and the
camera-ready per-z-bin KID.

Regime A (Table 1) scores each replica on its own against the fold's real test slices; Regime B (the
camera-ready table, upstream's fold evaluation) concatenates every replica of a cell and scores the pool once,
so a cell has one value per fold and the table gives mean +/- population std across folds. The pool is scored
under replica id 0 with the ids it holds in `pooled_replicas`, so every later step (metrics.json, the summary,
the table) reads it like a run with one replica.

MMD-PL (metrics/paired_lesion.py) joins the mask metrics of every scored set: the real test set's lesion
features are computed once per fold, each set's against them. The camera-ready per-z-bin KID is upstream's
compute_zbin_kid: a few evenly spaced z-bins (floor(linspace(0, z_bins - 1, 7)) = {0, 4, 9, 14, 19, 24, 29}),
small subsets (30) on the merged pool, then across folds the mean, sample std and a t-based 95 % half-width.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

MERGED = "merged"
PER_REPLICA = "per_replica"


def is_merged(scoring: dict | None) -> bool:
    return bool(scoring) and scoring.get("regime") == MERGED


def scored_sets(replicas: dict[int, dict[str, np.ndarray]], scoring: dict | None) -> dict[int, dict]:
    """The synthetic sets a run is scored on: each replica (Regime A), or one pool of all of them (Regime B)."""
    if not is_merged(scoring) or not replicas:
        return replicas
    keys = next(iter(replicas.values())).keys()
    pool = {k: np.concatenate([r[k] for r in replicas.values()]) for k in keys}
    return {0: {**pool, "pooled_replicas": sorted(replicas)}}


def set_info(fake: dict) -> dict:
    """What a scored set's entry says about itself: the replicas in a merged pool (absent for one replica)."""
    return {"pooled_replicas": list(fake["pooled_replicas"])} if "pooled_replicas" in fake else {}


def real_lesion_features(real: dict) -> pd.DataFrame:
    """MMD-PL features of the real test set (its masks are exact: binarised at 0)."""
    from slimdiff.metrics.paired_lesion import lesion_image_features

    return lesion_image_features(real["images"], real["masks"], 0.0)


def paired_lesion_entry(real_features: pd.DataFrame, fake: dict, cfg: dict) -> dict:
    """MMD-PL of one scored set: mmd_pl_mean/std (the table's column) and the rest under `paired_lesion`.

    Subsets as MMD-MF's (metrics.mmd_subsets, mmd_subset_size, seed); masks binarised at metrics.tau.
    """
    from slimdiff.metrics.paired_lesion import lesion_image_features, paired_lesion_metrics

    fake_features = lesion_image_features(fake["images"], fake["masks"], cfg["tau"])
    m = paired_lesion_metrics(
        real_features, fake_features, subsets=cfg["mmd_subsets"], subset_size=cfg["mmd_subset_size"], seed=cfg["seed"]
    )
    out = {"mmd_pl_mean": m.pop("mmd_pl_mean"), "mmd_pl_std": m.pop("mmd_pl_std")}
    reasons = m.pop("null_reasons", None)
    if reasons:
        out["null_reasons"] = reasons
    out["paired_lesion"] = m
    return out


def camera_ready_bins(n_bins: int, bins: int) -> list[int]:
    """floor(linspace(0, n_bins - 1, bins)), distinct: {0, 4, 9, 14, 19, 24, 29} for 30 z-bins and 7 bins."""
    return sorted({int(b) for b in np.floor(np.linspace(0, n_bins - 1, min(bins, n_bins)))})


def camera_ready_zbin_kid(
    real_feats: np.ndarray,
    real_zbin: np.ndarray,
    fake_feats: np.ndarray,
    fake_zbin: np.ndarray,
    n_bins: int,
    settings: dict,
    seed: int,
) -> list[dict]:
    """KID per camera-ready z-bin of the whole synthetic set (all replicas) against the real test slices."""
    from slimdiff.metrics.kid_fid import kid

    rows = []
    for b in camera_ready_bins(n_bins, settings["bins"]):
        ri, fi = real_zbin == b, fake_zbin == b
        k = kid(real_feats[ri], fake_feats[fi], settings["subsets"], settings["subset_size"], seed)
        rows.append({"z_bin": b, "n_real": int(ri.sum()), "n_synthetic": int(fi.sum()), **k})
    return rows


def zbin_kid_across_folds(metrics: list[dict]) -> dict:
    """{run: {z_bin: {mean, sd (ddof 1), ci95 (t half-width), n_folds, per_fold}}} over the runs' metrics.json
    files that carry a camera-ready per-z-bin KID (compute_zbin_kid's fold aggregate)."""
    from scipy import stats

    values: dict[str, dict[int, dict[int, float]]] = {}
    for m in metrics:
        for row in m.get("zbin_kid") or []:
            v = row.get("kid_mean")
            if v is not None and math.isfinite(float(v)):
                values.setdefault(m["run"], {}).setdefault(int(row["z_bin"]), {})[int(m["fold"])] = float(v)
    out: dict = {}
    for run, by_bin in sorted(values.items()):
        for b, per_fold in sorted(by_bin.items()):
            v = np.array(list(per_fold.values()))
            n = len(v)
            sd = float(v.std(ddof=1)) if n > 1 else math.nan
            ci = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
            entry = {
                "mean": float(v.mean()),
                "sd": sd,
                "ci95": ci,
                "n_folds": n,
                "per_fold": dict(sorted(per_fold.items())),
            }
            if n < 2:
                entry["null_reasons"] = {"sd": "one fold", "ci95": "one fold"}
            out.setdefault(run, {})[str(b)] = entry
    return out


def paired_lesion_across_folds(metrics: list[dict]) -> dict:
    """{run: {wasserstein: {feature: {mean, std, per_fold}}, frac_bright_synth: {...}, frac_bright_real: {...}}}.

    Upstream's MMD-PL summary (paired_lesion_mmd_summary.csv): per run, each fold's per-feature W1 and bright
    fractions (the mean over the fold's scored sets: one merged pool, or the replicas), then the mean and
    population std (ddof 0) across folds, as the camera-ready tables. Runs without MMD-PL are left out.
    """
    per_run: dict[str, dict[str, dict[int, float]]] = {}
    for m in metrics:
        sets = [r["paired_lesion"] for r in m.get("replicas", []) if isinstance(r.get("paired_lesion"), dict)]
        if not sets:
            continue
        values: dict[str, list[float]] = {}
        for pl in sets:
            for name, v in (pl.get("wasserstein") or {}).items():
                if name != "null_reasons":
                    values.setdefault(f"wasserstein.{name}", []).append(v)
            for name in ("frac_bright_synth", "frac_bright_real"):
                values.setdefault(name, []).append(pl.get(name))
        for key, vs in values.items():
            finite = [float(v) for v in vs if v is not None and math.isfinite(float(v))]
            if finite:
                per_run.setdefault(m["run"], {}).setdefault(key, {})[int(m["fold"])] = float(np.mean(finite))
    out: dict = {}
    for run, keys in sorted(per_run.items()):
        for key, per_fold in keys.items():
            v = np.array(list(per_fold.values()))
            entry = {"mean": float(v.mean()), "std": float(v.std(ddof=0)), "per_fold": dict(sorted(per_fold.items()))}
            group, _, name = key.partition(".")
            if name:
                out.setdefault(run, {}).setdefault(group, {})[name] = entry
            else:
                out.setdefault(run, {})[key] = entry
    return out
