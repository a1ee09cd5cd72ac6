"""Statistics across replicas and configurations.

* mean and sample std (ddof = 1) over replicas;
* within one prediction type: Friedman test over the Lp exponents (replicas as blocks), Nemenyi post-hoc;
* between prediction types: Kruskal-Wallis, Dunn post-hoc with Benjamini-Hochberg correction;
* effect size: Cliff's delta.
Tests run within one family of runs (same fold, variant, self-conditioning; compare_configurations).
"""

from __future__ import annotations

import itertools

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
    """`table`: rows = blocks (replicas), columns = configurations. Needs >= 3 columns and >= 2 rows."""
    table = table.dropna()
    k, n = table.shape[1], table.shape[0]
    if k < 3 or n < 2:
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
