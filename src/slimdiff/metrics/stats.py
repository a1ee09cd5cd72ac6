"""Statistics across replicas and configurations.

* mean and sample std (ddof = 1) over replicas;
* within one prediction type: Friedman test over the Lp exponents (replicas as blocks), Nemenyi post-hoc;
* between prediction types: Kruskal-Wallis, Dunn post-hoc with Benjamini-Hochberg correction;
* effect size: Cliff's delta.
Tests run within one family of runs (same fold, variant, self-conditioning; compare_configurations).

Regime B (paired_by_fold): two bottleneck variants of one configuration compared fold by fold, with the
paired differences' mean and sample std, Cohen's d_z, Cliff's delta, sign consistency and Wilcoxon.

The utility stage (paired_comparison): an arm trained with synthetic pairs against real-only, paired by
(fold, seed), Wilcoxon signed-rank.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy import stats


def mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def cliffs_delta(a, b) -> float:
    """P(a > b) - P(a < b) over all pairs."""
    a, b = np.asarray(a, float)[:, None], np.asarray(b, float)[None, :]
    return float((np.sign(a - b)).mean())


def friedman_nemenyi(table: pd.DataFrame) -> dict:
    """`table`: rows = blocks (replicas), columns = configurations. Needs >= 3 columns (scipy's Friedman test)
    and >= 3 rows, upstream's rule (within_group_comparison): fewer blocks give no statistic."""
    table = table.dropna()
    k, n = table.shape[1], table.shape[0]
    if k < 3 or n < 3:
        return {"friedman_stat": float("nan"), "friedman_p": float("nan"), "nemenyi": []}
    stat, p = stats.friedmanchisquare(*[table[c].to_numpy() for c in table.columns])
    ranks = table.rank(axis=1).mean()
    se = np.sqrt(k * (k + 1) / (6.0 * n))
    pairs = []
    for a, b in itertools.combinations(table.columns, 2):
        q = abs(ranks[a] - ranks[b]) / se
        p_ab = float(stats.studentized_range.sf(q * np.sqrt(2), k, np.inf))
        pairs.append({"a": a, "b": b, "p": min(1.0, p_ab)})
    return {"friedman_stat": float(stat), "friedman_p": float(p), "nemenyi": pairs}


def kruskal_dunn(groups: dict[str, list[float]]) -> dict:
    """Kruskal-Wallis across groups, then Dunn's pairwise z-tests with Benjamini-Hochberg adjusted p."""
    groups = {k: np.asarray(v, float)[np.isfinite(v)] for k, v in groups.items()}
    groups = {k: v for k, v in groups.items() if len(v)}
    if len(groups) < 2:
        return {"kruskal_stat": float("nan"), "kruskal_p": float("nan"), "dunn": []}
    stat, p = stats.kruskal(*groups.values())
    allv = np.concatenate(list(groups.values()))
    ranks = stats.rankdata(allv)
    n = len(allv)
    _, counts = np.unique(allv, return_counts=True)
    tie = (counts**3 - counts).sum() / (12.0 * (n - 1))
    mean_rank, start = {}, 0
    for name, v in groups.items():
        mean_rank[name] = ranks[start : start + len(v)].mean()
        start += len(v)
    raw = []
    names = list(groups)
    for a, b in itertools.combinations(names, 2):
        se = np.sqrt((n * (n + 1) / 12.0 - tie) * (1 / len(groups[a]) + 1 / len(groups[b])))
        z = (mean_rank[a] - mean_rank[b]) / se if se > 0 else 0.0
        raw.append((a, b, z, 2 * stats.norm.sf(abs(z))))
    adjusted = stats.false_discovery_control([r[3] for r in raw], method="bh") if raw else []
    return {
        "kruskal_stat": float(stat),
        "kruskal_p": float(p),
        "dunn": [
            {"a": a, "b": b, "z": float(z), "p": float(praw), "p_bh": float(padj)}
            for (a, b, z, praw), padj in zip(raw, adjusted, strict=True)
        ],
    }


def compare_configurations(family: pd.DataFrame, metric: str) -> dict:
    """Regime A of the paper's statistics on one family of runs (see slimdiff.experiments.comparison_family).

    `family`: one row per replica with columns prediction, p, replica and `metric`. Between prediction types:
    Kruskal-Wallis + Dunn (BH) and Cliff's delta on the values pooled over Lp and replicas; within each
    prediction type: Friedman + Nemenyi with the Lp exponents as treatments and the replicas as blocks.
    """
    by_pred = {p: g[metric].tolist() for p, g in family.groupby("prediction")}
    preds = list(by_pred)
    return {
        "n": {p: int(np.isfinite(np.asarray(v, float)).sum()) for p, v in by_pred.items()},
        "between_predictions": kruskal_dunn(by_pred),
        "within_prediction": {
            p: friedman_nemenyi(g.pivot_table(index="replica", columns="p", values=metric))
            for p, g in family.groupby("prediction")
        },
        "cliffs_delta": [
            {"a": a, "b": b, "delta": cliffs_delta(by_pred[a], by_pred[b])}
            for i, a in enumerate(preds)
            for b in preds[i + 1 :]
        ],
    }


def paired_by_fold(
    reference: dict[int, float | None],
    other: dict[int, float | None],
    labels: tuple[str, str] = ("shared", "decoupled"),
) -> dict:
    """Regime B: one metric of two architectures, paired by fold (lower is better).

    `reference` and `other` map a fold to the run's value on that fold, which is the mean over the run's
    replicas (the `mean` of the metric in the `summary` of its metrics.json). The differences are
    delta_k = other_k - reference_k, so a positive delta means the reference (shared) did better on fold k.

    Only folds with a finite value in both are paired; every other fold is listed in `unpaired_folds` with
    the reason (no run, or an undefined value). With fewer than 2 pairs only the per-fold values are given.
    Returned, keyed by `labels`: per architecture mean, sample std (ddof 1) and per-fold values over the
    paired folds; the differences' per-fold values, mean and sample std; d_z = mean / sd of the differences;
    Cliff's delta of the other architecture's values against the reference's; sign consistency (every delta
    has the same non-zero sign) with the count of positive and negative deltas; the Wilcoxon signed-rank
    test (scipy, two-sided; exact for a few folds, so with 3 folds p is at least 0.25). A statistic that is
    undefined is NaN or None, with the reason in `null_reasons`.
    """
    ref_label, other_label = labels
    folds = sorted(set(reference) | set(other))
    paired, unpaired = [], {}
    for fold in folds:
        missing = [
            f"no {label} run on this fold" if fold not in values else f"{label} value undefined on this fold"
            for label, values in ((ref_label, reference), (other_label, other))
            if not _finite(values.get(fold))
        ]
        if missing:
            unpaired[fold] = "; ".join(missing)
        else:
            paired.append(fold)
    a = np.array([float(reference[f]) for f in paired])
    b = np.array([float(other[f]) for f in paired])
    delta = b - a
    n = len(paired)
    result: dict = {"n_pairs": n, "paired_folds": paired, "unpaired_folds": unpaired}
    too_few = f"fewer than 2 paired folds (n = {n})"
    for label, values in ((ref_label, a), (other_label, b)):
        result[label] = _per_architecture(paired, values, too_few)
    result["difference"] = {
        "definition": f"{other_label} - {ref_label} (positive: {ref_label} better)",
        **_per_architecture(paired, delta, too_few),
    }
    reasons: dict[str, str] = {}
    if n < 2:
        result.update(d_z=math.nan, cliffs_delta=math.nan, sign_consistent=None, n_positive=None, n_negative=None)
        result.update(wilcoxon_statistic=None, wilcoxon_p=None)
        reasons = dict.fromkeys(
            ("d_z", "cliffs_delta", "sign_consistent", "n_positive", "n_negative", "wilcoxon_statistic", "wilcoxon_p"),
            too_few,
        )
        result["null_reasons"] = reasons
        return result
    sd = float(delta.std(ddof=1))
    all_zero = bool((delta == 0).all())
    if all_zero:
        result["d_z"], reasons["d_z"] = math.nan, "every paired difference is 0"
    elif sd <= 1e-12 * float(np.abs(delta).max()):
        result["d_z"], reasons["d_z"] = math.nan, "sd of the differences is 0 (the same difference on every fold)"
    else:
        result["d_z"] = float(delta.mean()) / sd
    result["cliffs_delta"] = cliffs_delta(b, a)
    result["n_positive"], result["n_negative"] = int((delta > 0).sum()), int((delta < 0).sum())
    result["sign_consistent"] = result["n_positive"] == n or result["n_negative"] == n
    if all_zero:
        result["wilcoxon_statistic"] = result["wilcoxon_p"] = None
        reasons["wilcoxon_statistic"] = reasons["wilcoxon_p"] = "every paired difference is 0"
    else:
        with warnings.catch_warnings():  # small-sample notes; the exact distribution is used where it applies
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", UserWarning)
            test = stats.wilcoxon(b, a, alternative="two-sided")
        result["wilcoxon_statistic"], result["wilcoxon_p"] = float(test.statistic), float(test.pvalue)
    if reasons:
        result["null_reasons"] = reasons
    return result


def _finite(value) -> bool:
    return value is not None and math.isfinite(float(value))


def _per_architecture(folds: list[int], values: np.ndarray, too_few: str) -> dict:
    """Mean, sample std (ddof 1) and per-fold values; the std is NaN (with the reason) below 2 folds."""
    out = {
        "mean": float(values.mean()) if len(values) else math.nan,
        "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
        "per_fold": {f: float(v) for f, v in zip(folds, values, strict=True)},
    }
    reasons = {}
    if not len(values):
        reasons["mean"] = "no paired fold"
    if len(values) < 2:
        reasons["sd"] = too_few
    if reasons:
        out["null_reasons"] = reasons
    return out


def paired_comparison(a: Mapping[tuple[int, int], float], b: Mapping[tuple[int, int], float]) -> dict:
    """Arm b against arm a over the (fold, seed) keys both have and where both values are finite.

    Pairs share the test slices and the seed, so their difference b - a removes what the fold and seed do to
    both; the Wilcoxon signed-rank test asks whether those differences centre on zero without assuming normality.
    """
    keys = sorted(k for k in set(a) & set(b) if np.isfinite(a[k]) and np.isfinite(b[k]))
    diffs = np.array([b[k] - a[k] for k in keys], float)
    out = {
        "n_pairs": len(keys),
        "mean_difference": float(diffs.mean()) if len(diffs) else math.nan,
        "wilcoxon_p": math.nan,
    }
    reasons = {}
    if not len(diffs):
        reasons["mean_difference"] = "no (fold, seed) pair with finite values in both arms"
    if len(diffs) < 2:
        reasons["wilcoxon_p"] = f"fewer than 2 pairs ({len(diffs)})"
    elif not diffs.any():
        reasons["wilcoxon_p"] = "all differences are zero"
    else:
        out["wilcoxon_p"] = float(stats.wilcoxon(diffs).pvalue)
    if reasons:
        out["null_reasons"] = reasons
    return out
