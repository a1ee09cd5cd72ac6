"""The metrics of one run (and fold) against the real test set, the real-vs-real baseline, and the summary.

The Inception, LPIPS and torch-fidelity imports sit inside the functions that use them: the mask metrics and
the summary jobs then start without torch (each Snakemake job is its own process).

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
from slimdiff.errors import MissingInputError
from slimdiff.experiments import comparison_family, parse_run
from slimdiff.generation.outputs import read_samples
from slimdiff.io import as_float, read_json, read_table, write_json, write_text
from slimdiff.metrics import stats
from slimdiff.metrics.lesion_stats import lesion_stats
from slimdiff.metrics.morphology import lesion_features, mmd_mf, tau_sweep, wasserstein_per_feature
from slimdiff.names import LESION_COLUMNS, METRIC_NAMES, METRICS, run_fold_key

log = logging.getLogger(__name__)


def real_split(cache_dir: str | Path, fold: int, role: str) -> dict[str, np.ndarray]:
    cache = load_cache(cache_dir)
    rows = cache.index[fold_membership(cache.index, fold) == role]
    r = rows["row"].to_numpy()
    return {
        "images": np.asarray(cache.images[r]),
        "masks": np.asarray(cache.masks[r], np.float32),
        "z_bin": rows["z_bin"].to_numpy(),
        "class": rows["class"].to_numpy(),
    }


def load_replicas(sample_files: list[str | Path]) -> dict[int, dict[str, np.ndarray]]:
    """zbinNN.npz files of one run -> {replica: images, masks, z_bin, class} (float32)."""
    parts: dict[int, list[dict]] = {}
    for path in sample_files:
        s = read_samples(path)
        parts.setdefault(int(s["meta"]["replica"]), []).append(s)
    out = {}
    for r, items in sorted(parts.items()):
        out[r] = {
            k: np.concatenate([np.asarray(i[k], np.float32 if k in ("images", "masks") else None) for i in items])
            for k in ("images", "masks", "z_bin", "class")
        }
    return out


def image_metrics(real: dict, fake: dict, real_feats, fake_feats, lpips_metric, cfg: dict) -> dict:
    from slimdiff.metrics.kid_fid import fid, kid

    out = kid(real_feats, fake_feats, cfg["kid_subsets"], cfg["kid_subset_size"], cfg["seed"])
    out["fid"] = fid(real_feats, fake_feats)
    reasons = out.pop("null_reasons", {})
    if not np.isfinite(out["fid"]):
        reasons["fid"] = f"fewer than 2 images on a side ({len(real_feats)} real, {len(fake_feats)} synthetic)"
    lpips = lpips_metric.unpaired(real["images"], fake["images"], cfg["lpips_pairs"], cfg["seed"])
    reasons.update(lpips.pop("null_reasons", {}))
    out.update(lpips)
    if reasons:
        out["null_reasons"] = reasons
    return out


def mask_metrics(real_masks: np.ndarray | pd.DataFrame, fake_masks: np.ndarray | pd.DataFrame, cfg: dict) -> dict:
    """MMD-MF and the per-feature Wasserstein; `null_reasons` says why MMD-MF is undefined when it is.

    Either side may be given as its lesion_features table (real masks at tau 0, synthetic at cfg tau), when the
    caller needs the table too.
    """
    real_l = real_masks if isinstance(real_masks, pd.DataFrame) else lesion_features(real_masks, 0.0)
    fake_l = fake_masks if isinstance(fake_masks, pd.DataFrame) else lesion_features(fake_masks, cfg["tau"])
    return {
        **mmd_mf(real_l, fake_l, cfg["mmd_subsets"], cfg["mmd_subset_size"], cfg["seed"]),
        "wasserstein": wasserstein_per_feature(real_l, fake_l),
    }


def _provenance(cfg: dict, weights: dict | None) -> dict:
    return {
        "settings": cfg,
        "weights": weights or {},
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
    }


def evaluate_images(
    cache_dir,
    sample_files,
    out_dir,
    fold: int,
    cfg: dict,
    run: str,
    device: str = "cpu",
    weights: dict | None = None,
    scoring: dict | None = None,
) -> dict:
    """image.json (per replica KID, FID, LPIPS; memorisation) and per_zbin.csv for one run and fold.

    `scoring` is the run's protocol's: Regime B (`merged`) scores the pool of all replicas once instead, and
    `zbin_kid` adds the camera-ready per-z-bin KID (metrics/protocol_scoring.py).
    """
    from slimdiff.metrics import protocol_scoring
    from slimdiff.metrics.features import InceptionFeatures
    from slimdiff.metrics.kid_fid import zbin_kid
    from slimdiff.metrics.lpips_metric import LPIPSMetric

    out_dir = Path(out_dir)
    feature_cache = cfg.get("feature_cache")
    inception = InceptionFeatures(device=device, batch_size=cfg["batch_size"], pixels=_kid_fid_pixels(cfg))
    lpips_metric = LPIPSMetric(cfg["lpips_net"], device=device)
    real = real_split(cache_dir, fold, "test")
    real_feats = inception.cached(real["images"], feature_cache)
    replicas = protocol_scoring.scored_sets(load_replicas(sample_files), scoring)
    if not replicas:
        raise MissingInputError(f"run {run}: no sample files given")
    per_replica, fake_feats = [], {}
    for r, fake in replicas.items():
        fake_feats[r] = inception.cached(fake["images"], feature_cache)
        m = image_metrics(real, fake, real_feats, fake_feats[r], lpips_metric, cfg)
        per_replica.append({"replica": r, **protocol_scoring.set_info(fake), "n_synthetic": len(fake["images"]), **m})
        log.info(
            "%s fold %d replica %d: KID %.4f FID %.2f LPIPS %.4f",
            run,
            fold,
            r,
            m["kid_mean"],
            m["fid"],
            m["lpips_mean"],
        )
    pooled = {k: np.concatenate([f[k] for f in replicas.values()]) for k in ("images", "z_bin")}
    pooled_feats = np.concatenate([fake_feats[r] for r in replicas])
    zrows = []
    for b in sorted(set(real["z_bin"].tolist()) | set(pooled["z_bin"].tolist())):
        ri, fi = real["z_bin"] == b, pooled["z_bin"] == b
        k = zbin_kid(
            real_feats[ri], pooled_feats[fi], cfg["zbin_kid_subsets"], cfg["zbin_kid_subset_size"], cfg["seed"]
        )
        # upstream's compute_per_zbin_lpips: seed + z-bin, undefined below 5 images on a side
        lpz = lpips_metric.unpaired(
            real["images"][ri], pooled["images"][fi], cfg["zbin_lpips_pairs"], cfg["seed"] + int(b), min_images=5
        )
        reasons = {**k.pop("null_reasons", {}), **lpz.pop("null_reasons", {})}
        why = "; ".join(f"{key}: {text}" for key, text in reasons.items())  # one CSV cell: which value, and why
        zrows.append(
            {"z_bin": b, "n_real": int(ri.sum()), "n_synthetic": int(fi.sum()), **k, **lpz, "null_reasons": why}
        )
    train = real_split(cache_dir, fold, "train")
    if cfg.get("memorization_features", "pool3") == "logits":  # upstream's extractor (metric-parity.md)
        nn_net = InceptionFeatures(
            device=device, batch_size=cfg["batch_size"], pixels="upstream_no_wrap", feature="logits_unbiased"
        )
        nn_fake = np.concatenate([nn_net.cached(replicas[r]["images"], feature_cache) for r in replicas])
        memo = memorization(
            nn_net.cached(train["images"], feature_cache), nn_net.cached(real["images"], feature_cache), nn_fake
        )
    else:
        memo = memorization(inception.cached(train["images"], feature_cache), real_feats, pooled_feats)
    result = {
        "run": run,
        "fold": fold,
        "n_real_test": len(real["images"]),
        "scoring": (scoring or {}).get("regime", protocol_scoring.PER_REPLICA),
        "replicas": per_replica,
        "memorization": memo,
        "inception_weights_sha256": inception.weights_sha256,
        **_provenance(cfg, weights),
    }
    if scoring and scoring.get("zbin_kid"):
        result["zbin_kid"] = protocol_scoring.camera_ready_zbin_kid(
            real_feats,
            real["z_bin"],
            pooled_feats,
            pooled["z_bin"],
            load_cache(cache_dir).meta["z_bins"],
            scoring["zbin_kid"],
            cfg["seed"],
        )
    write_text(out_dir / "per_zbin.csv", pd.DataFrame(zrows).to_csv(index=False))
    write_json(out_dir / "image.json", result)
    return result


def evaluate_masks(
    cache_dir, sample_files, out_dir, fold: int, cfg: dict, run: str, scoring: dict | None = None
) -> dict:
    """mask.json (per replica MMD-MF and MMD-PL), morphology.csv (per-feature Wasserstein) and tau_sweep.csv.

    Regime B (`scoring` merged) scores the pool of all replicas once instead of each replica.
    """
    from slimdiff.metrics import protocol_scoring

    out_dir = Path(out_dir)
    real = real_split(cache_dir, fold, "test")
    replicas = protocol_scoring.scored_sets(load_replicas(sample_files), scoring)
    real_pl = protocol_scoring.real_lesion_features(real)
    per_replica, morph, fake_tables = [], [], []
    real_table = lesion_features(real["masks"], 0.0)
    lesions = [real_table.assign(source="real", replica=-1)]
    brain = load_cache(cache_dir).meta["config"]["cache"]["brain_threshold"]  # what "on brain" meant for the cache
    real_stats = lesion_stats(real["images"], real["masks"], real["class"], 0.0, brain)
    for r, fake in replicas.items():
        fake_tables.append(lesion_features(fake["masks"], cfg["tau"]))
        m = _merge_replica(
            mask_metrics(real_table, fake_tables[-1], cfg), protocol_scoring.paired_lesion_entry(real_pl, fake, cfg)
        )
        morph.append({"replica": r, **m.pop("wasserstein")})
        stats_r = lesion_stats(fake["images"], fake["masks"], fake["class"], cfg["tau"], brain)
        per_replica.append({"replica": r, **protocol_scoring.set_info(fake), **m, "lesion_stats": stats_r})
        log.info(
            "%s fold %d replica %d: %d lesions; class-1 samples with a lesion %.0f %%, class-0 %.0f %%",
            run,
            fold,
            r,
            stats_r["n_lesions"],
            100 * (stats_r["lesion_rate_cls1"] or 0),
            100 * (stats_r["lesion_rate_cls0"] or 0),
        )
        lesions.append(fake_tables[-1].assign(source="synthetic", replica=r))
    write_text(out_dir / "lesions.csv", pd.concat(lesions, ignore_index=True).to_csv(index=False))
    pooled = np.concatenate([f["masks"] for f in replicas.values()])
    write_text(out_dir / "morphology.csv", pd.DataFrame(morph).to_csv(index=False))
    sweep = tau_sweep(
        real_table,
        pooled,
        subsets=cfg["mmd_subsets"],
        subset_size=cfg["mmd_subset_size"],
        seed=cfg["seed"],
        known={cfg["tau"]: pd.concat(fake_tables, ignore_index=True)} if fake_tables else None,
    )
    write_text(out_dir / "tau_sweep.csv", sweep.to_csv(index=False))
    result = {
        "run": run,
        "fold": fold,
        "scoring": (scoring or {}).get("regime", protocol_scoring.PER_REPLICA),
        "replicas": per_replica,
        "real_lesion_stats": real_stats,
        **_provenance(cfg, None),
    }
    write_json(out_dir / "mask.json", result)
    return result


def _merge_replica(image: dict, mask: dict) -> dict:
    reasons = {**image.get("null_reasons", {}), **mask.get("null_reasons", {})}
    merged = {**image, **mask}
    if reasons:
        merged["null_reasons"] = reasons
    return merged


def merge_run_metrics(image_json, mask_json, out_json) -> dict:
    """metrics.json of a run: per replica all four metrics, and mean/std over replicas."""
    img, msk = read_json(image_json), read_json(mask_json)
    masks = {m["replica"]: m for m in msk["replicas"]}
    replicas = [_merge_replica(r, masks.get(r["replica"], {})) for r in img["replicas"]]
    summary = {}
    for m in METRICS:
        summary[m.name] = _over_replicas([as_float(r.get(m.entry_key)) for r in replicas], m.entry_key)
    for name in LESION_COLUMNS:
        summary[name] = _over_replicas([_lesion_value(r, name) for r in replicas], f"lesion_stats.{name}")
    if img.get("scoring") == "merged":  # one pooled set: its spread over subsets (KID, MMD) or pairs (LPIPS)
        for m in METRICS:
            within = replicas[0].get(m.spread_key) if m.has_spread and replicas else None
            summary[m.name]["within_std"] = as_float(within)
    result = {
        "run": img["run"],
        "fold": img["fold"],
        "scoring": img.get("scoring", "per_replica"),
        "summary": summary,
        "replicas": replicas,
        "real_lesion_stats": msk.get("real_lesion_stats"),
        "memorization": img["memorization"],
        **({"zbin_kid": img["zbin_kid"]} if "zbin_kid" in img else {}),
        "n_real_test": img["n_real_test"],
        "weights": img["weights"],
        "versions": img["versions"],
        "created": provenance.timestamp(),
    }
    write_json(out_json, result)
    return result


def _over_replicas(values: list[float], key: str) -> dict:
    mean, std = stats.mean_std(values)
    out = {"mean": mean, "std": std}
    if not np.isfinite(mean):
        why = f"undefined in every replica (replicas[].{key}; see their null_reasons)"
        out["null_reasons"] = {"mean": why, "std": why}
    return out


def _lesion_value(replica: dict, name: str) -> float:
    return as_float(replica.get("lesion_stats", {}).get(name))


def evaluate_baseline(
    cache_dir, out_json, fold: int, cfg: dict, device: str = "cpu", weights: dict | None = None
) -> dict:
    """Real vs real: the fold's training slices scored against its test slices, the reference line."""
    from slimdiff.metrics.features import InceptionFeatures
    from slimdiff.metrics.lpips_metric import LPIPSMetric

    feature_cache = cfg.get("feature_cache")
    inception = InceptionFeatures(device=device, batch_size=cfg["batch_size"], pixels=_kid_fid_pixels(cfg))
    lpips_metric = LPIPSMetric(cfg["lpips_net"], device=device)
    test, train = real_split(cache_dir, fold, "test"), real_split(cache_dir, fold, "train")
    m = image_metrics(
        test,
        train,
        inception.cached(test["images"], feature_cache),
        inception.cached(train["images"], feature_cache),
        lpips_metric,
        cfg,
    )
    m = _merge_replica(m, mask_metrics(test["masks"], train["masks"], dict(cfg, tau=0.0)))
    from slimdiff.metrics.protocol_scoring import paired_lesion_entry, real_lesion_features

    m = _merge_replica(m, paired_lesion_entry(real_lesion_features(test), train, dict(cfg, tau=0.0)))
    brain = load_cache(cache_dir).meta["config"]["cache"]["brain_threshold"]
    m["lesion_stats"] = lesion_stats(test["images"], test["masks"], test["class"], 0.0, brain)  # the real test set
    result = {
        "fold": fold,
        "reference": "test",
        "compared": "train",
        "n_test": len(test["images"]),
        "n_train": len(train["images"]),
        **m,
        "inception_weights_sha256": inception.weights_sha256,
        **_provenance(cfg, weights),
    }
    write_json(out_json, result)
    return result


def _kid_fid_pixels(cfg: dict) -> str:
    """metrics.kid_fid_pixels: "fixed" (default) or "upstream" (its uint8 wrap-around, for the paper's numbers)."""
    return cfg.get("kid_fid_pixels", "fixed")


def memorization(train_feats: np.ndarray, test_feats: np.ndarray, fake_feats: np.ndarray) -> dict:
    """Nearest-neighbour distances to the training set: synthetic slices against held-out real ones.

    Upstream's camera-ready memorisation check, on Inception pool3 features: D_test = each test slice's distance to
    its nearest training slice, D_synth = the same for each synthetic slice. A synthetic slice closer to the
    training set than every test slice is (D_synth < min D_test) is a suspected copy; `suspect_frac` is their
    share. `wasserstein_1` between the two distance distributions, and `nn_ratio` = median D_synth / median
    D_test (about 1: generalisation, well below 1: memorisation). The share below the 5th percentile of D_test
    is kept as a less strict extra.
    """
    from scipy.stats import wasserstein_distance

    def nn(a: np.ndarray) -> np.ndarray:
        d2 = (a**2).sum(1)[:, None] + (train_feats**2).sum(1)[None, :] - 2 * a @ train_feats.T
        return np.sqrt(np.maximum(d2.min(1), 0))

    if min(len(train_feats), len(test_feats), len(fake_feats)) == 0:
        sizes = f"{len(train_feats)} train, {len(test_feats)} test, {len(fake_feats)} synthetic"
        return {"null_reasons": {"nn_ratio": f"an empty set ({sizes})"}, "nn_ratio": float("nan")}
    d_fake, d_test = nn(fake_feats), nn(test_feats)
    suspects = int((d_fake < d_test.min()).sum())
    quantiles = (1, 5, 25, 50, 75, 99)
    return {
        "suspect_count": suspects,
        "suspect_frac": suspects / len(d_fake),
        "wasserstein_1": float(wasserstein_distance(d_fake, d_test)),
        "nn_ratio": float(np.median(d_fake) / max(np.median(d_test), 1e-12)),
        "frac_below_test_p5": float((d_fake < np.percentile(d_test, 5)).mean()),
        "median_nn_synthetic": float(np.median(d_fake)),
        "median_nn_test": float(np.median(d_test)),
        "d_synth": _distribution(d_fake, quantiles),
        "d_test": _distribution(d_test, quantiles),
    }


def _distribution(d: np.ndarray, quantiles: tuple[int, ...]) -> dict:
    return {
        "n": len(d),
        "mean": float(d.mean()),
        "std": float(d.std(ddof=0)),
        "min": float(d.min()),
        **{f"p{q}": float(np.percentile(d, q)) for q in quantiles},
    }


def collect_run_tables(files: list[str | Path], run_folds: list[tuple[str, int]], out_csv: str | Path) -> pd.DataFrame:
    """Stack per-run CSVs into one table with run and fold columns: files[i] belongs to run_folds[i]."""
    if len(files) != len(run_folds):
        raise ValueError(f"{len(files)} tables for {len(run_folds)} (run, fold) pairs")
    frames = [
        read_table(path).assign(run=run, fold=int(fold)) for path, (run, fold) in zip(files, run_folds, strict=True)
    ]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["run", "fold"])
    write_text(out_csv, table.to_csv(index=False))
    return table


def aggregate(
    metric_files: list[str | Path],
    baseline_file: str | Path,
    out_json: str | Path,
    out_csv: str | Path,
    weights: dict | None = None,
    utility: dict | None = None,
) -> dict:
    """Every run's metrics, the baseline, and the statistics across configurations -> summary.json + CSV.

    `statistics` holds Regime A (within each comparison family); `regime_b`, present only when a shared run
    and a twin of another variant share at least two folds, the fold-paired comparison (see regime_b);
    `utility`, the downstream segmenter results (slimdiff.utility.summary), when that stage ran.
    """
    runs = [read_json(p) for p in metric_files]
    baseline = read_json(baseline_file)
    table = replica_table(runs)
    summary = {
        "runs": {run_fold_key(m["run"], m["fold"]): m["summary"] for m in runs},
        "baseline_std": {name: baseline.get(f"{name}_std") for name in METRIC_NAMES},  # FID has none: null
        "baseline": _baseline_values(baseline),
        "statistics": regime_a(table),
        # synthetic vs test nearest-neighbour distances to the training set, per run and fold
        "memorization": {run_fold_key(m["run"], m["fold"]): m.get("memorization") for m in runs},
    }
    paired = regime_b(runs, table)
    if paired:
        summary["regime_b"] = paired
    from slimdiff.metrics.protocol_scoring import paired_lesion_across_folds, zbin_kid_across_folds

    zbin = zbin_kid_across_folds(runs)  # the camera-ready per-z-bin KID, where a protocol asked for it
    if zbin:
        summary["zbin_kid"] = zbin
    paired_lesion = paired_lesion_across_folds(runs)  # MMD-PL's per-feature W1 and bright fraction per run
    if paired_lesion:
        summary["paired_lesion"] = paired_lesion
    if utility is not None:
        summary["utility"] = utility
    summary.update(
        weights_sha256={k: v["sha256"] for k, v in (weights or {}).items()},
        versions=provenance.versions(),
        created=provenance.timestamp(),
    )
    write_json(out_json, summary)
    write_text(out_csv, table.to_csv(index=False))
    return summary


def replica_table(runs: list[dict]) -> pd.DataFrame:
    """One row per replica of every run's metrics.json: run, fold, run settings, family, metrics, lesion counts."""
    rows = []
    for m in runs:
        for rep in m["replicas"]:
            rows.append(
                {
                    "run": m["run"],
                    "fold": m["fold"],
                    **parse_run(m["run"]),
                    "family": comparison_family(m["run"], m["fold"]),
                    "replica": rep["replica"],
                    "scoring": m.get("scoring", "per_replica"),  # merged: the replica is the pool of all of them
                    **{metric.name: as_float(rep.get(metric.entry_key)) for metric in METRICS},
                    **{name: _lesion_value(rep, name) for name in LESION_COLUMNS},
                    **(_within(rep) if m.get("scoring") == "merged" else {}),
                }
            )
    return pd.DataFrame(rows)


def _within(pool: dict) -> dict:
    """A merged pool's own spread (`<metric>_within`): over subsets (KID, MMD-MF, MMD-PL) or pairs (LPIPS)."""
    return {f"{m.name}_within": as_float(pool.get(m.spread_key)) for m in METRICS if m.has_spread}


def regime_a(table: pd.DataFrame) -> dict:
    """{metric: {family: comparison of its configurations}} for every family with more than one run.

    One set of tests per family (same fold, variant, self-conditioning): pooling families would compare
    prediction types across different training sets and settings, and average replicas across folds.
    Families are listed largest first.
    """
    order = sorted(table["family"].unique(), key=lambda f: (-int((table["family"] == f).sum()), f))
    return {
        metric: {
            family: stats.compare_configurations(table[table["family"] == family], metric)
            for family in order
            if table.loc[table["family"] == family, "run"].nunique() > 1
        }
        for metric in METRIC_NAMES
    }


def _baseline_values(baseline: dict) -> dict:
    """The baseline's metrics, and the real test set's own lesion counts."""
    return {
        **{m.name: as_float(baseline.get(m.entry_key)) for m in METRICS},
        **{name: _lesion_value(baseline, name) for name in LESION_COLUMNS},
    }


def regime_b(runs: list[dict], table: pd.DataFrame) -> dict:
    """Regime B: each shared run against its twins of another variant, paired by fold (stats.paired_by_fold).

    {shared run: {"<variant>_vs_shared": {"runs", "paired_folds", "unpaired_folds", kid, fid, lpips, mmd_mf}}}.
    A run's value on a fold is the mean over its replicas, the `mean` in its metrics.json `summary` (the
    replicas' mean when a summary lacks the metric). Empty unless some comparison has at least two folds on
    which both runs exist; then comparisons with fewer are listed too, with their unpaired folds and a
    `not_compared` reason instead of statistics, so a missing pair is never passed over.
    """
    from slimdiff.metrics.pairing import MIN_PAIRS, REFERENCE, comparison_key, has_paired_folds, variant_pairs

    pairs = variant_pairs((m["run"], int(m["fold"])) for m in runs)
    for shared, variants in pairs.items():
        for p in variants.values():
            if len(p["paired_folds"]) < MIN_PAIRS:
                log.warning(
                    "Regime B: %s and %s share %d fold(s) %s; a paired comparison needs %d",
                    p["run"],
                    shared,
                    len(p["paired_folds"]),
                    p["paired_folds"],
                    MIN_PAIRS,
                )
    if not has_paired_folds(pairs):
        return {}
    value = {(m["run"], int(m["fold"]), metric): _fold_value(m, metric, table) for m in runs for metric in METRIC_NAMES}
    folds = {}
    for m in runs:
        folds.setdefault(m["run"], []).append(int(m["fold"]))
    out: dict = {}
    for shared, variants in pairs.items():
        for variant, p in variants.items():
            other = p["run"]
            comparison = {
                "runs": {REFERENCE: shared, variant: other},
                "paired_folds": p["paired_folds"],
                "unpaired_folds": p["unpaired_folds"],
            }
            out.setdefault(shared, {})[comparison_key(variant)] = comparison
            if len(p["paired_folds"]) < MIN_PAIRS:
                comparison["not_compared"] = (
                    f"both runs exist on {len(p['paired_folds'])} fold(s); a paired comparison needs {MIN_PAIRS}"
                )
                continue
            for metric in METRIC_NAMES:
                comparison[metric] = stats.paired_by_fold(
                    {f: value[shared, f, metric] for f in folds[shared]},
                    {f: value[other, f, metric] for f in folds[other]},
                    labels=(REFERENCE, variant),
                )
    return out


def _fold_value(metrics: dict, metric: str, table: pd.DataFrame) -> float:
    """A run's value on its fold: the mean over replicas from metrics.json `summary` (null there -> NaN)."""
    entry = (metrics.get("summary") or {}).get(metric)
    if isinstance(entry, dict) and "mean" in entry:
        return as_float(entry["mean"])
    rows = table[(table["run"] == metrics["run"]) & (table["fold"] == metrics["fold"])]
    return float(rows[metric].mean()) if rows[metric].notna().any() else float("nan")
