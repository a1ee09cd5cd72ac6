"""Subject-level splits: a fixed test set and k folds over the rest, stratified by lesion burden.

Splits are data (`splits.json`), drawn once with a seed, so every later stage reads the same subjects.
Stratification: controls form one stratum; patients are cut into `burden_strata` quantile strata of their
lesion burden (share of cached slices that carry lesion). A seeded *proportional interleaving* of the
strata orders all subjects so that every prefix has about the cohort's mix; the test set is a prefix and
the folds are dealt round-robin from the rest, which keeps folds the same size and equally mixed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from slimdiff.config import ConfigError


def burden_strata(burden: pd.Series, groups: pd.Series, n_strata: int) -> pd.Series:
    """Stratum label per subject: -1 for controls, 0..k-1 lesion-burden quantiles for patients."""
    strata = pd.Series(-1, index=burden.index, dtype=int)
    patients = groups == "fcd"
    n = int(patients.sum())
    k = max(1, min(n_strata, n // 2))  # at least two subjects per stratum
    if n:
        ranks = burden[patients].rank(method="first").to_numpy() - 1
        strata[patients] = (ranks * k // n).astype(int)
    return strata


def interleave(strata: pd.Series, rng: np.random.Generator) -> list[str]:
    """Subjects ordered so that any prefix is stratified (proportional allocation with random offsets)."""
    keys = {}
    for _, members in strata.groupby(strata):
        names = list(members.index)
        rng.shuffle(names)
        offset = rng.random()
        for j, name in enumerate(names):
            keys[name] = (j + offset) / len(names)
    return sorted(keys, key=lambda s: (keys[s], s))


def make_splits(subjects: pd.DataFrame, cfg: dict, predefined_test: list[str]) -> dict:
    """Subjects table (index subject id; columns group, burden) -> the splits.json structure."""
    rng = np.random.default_rng(cfg["seed"])
    strata = burden_strata(subjects["burden"], subjects["group"], cfg["burden_strata"])
    unknown = sorted(set(predefined_test) - set(subjects.index))
    if unknown:
        raise ConfigError(f"predefined test subjects not in the cache: {', '.join(unknown)}")

    order = interleave(strata, rng)
    if predefined_test:
        test = sorted(predefined_test)
        method = "predefined"
    else:
        n_test = int(np.floor(cfg["test_fraction"] * len(order)))
        test = sorted(order[:n_test])
        method = "stratified_fraction"
    pool = [s for s in order if s not in set(test)]

    k = cfg["n_folds"]
    if k == 1:
        n_val = max(1, int(round(cfg["val_fraction"] * len(pool)))) if len(pool) > 1 else 0
        val_sets = [set(pool[:n_val])]
    else:
        if len(pool) < k:
            raise ConfigError(f"{len(pool)} non-test subjects cannot fill {k} folds; lower data.splits.n_folds")
        val_sets = [set(pool[i::k]) for i in range(k)]
    if not pool or any(len(pool) - len(v) == 0 for v in val_sets):
        raise ConfigError(f"too few subjects ({len(subjects)}) for a test set plus training subjects")
    folds = [{"fold": i, "train": sorted(set(pool) - v), "val": sorted(v)} for i, v in enumerate(val_sets)]
    return {
        "seed": cfg["seed"],
        "test_method": method,
        "n_folds": k,
        "test": test,
        "folds": folds,
        "strata": {s: int(strata[s]) for s in sorted(strata.index)},
    }


def subject_split_columns(splits: dict, subject_ids: pd.Series) -> pd.DataFrame:
    """Per-row `split` (test | trainval) and `val_fold` (fold where the subject validates, else -1)."""
    test = set(splits["test"])
    val_fold = {s: f["fold"] for f in splits["folds"] for s in f["val"]}
    return pd.DataFrame(
        {
            "split": ["test" if s in test else "trainval" for s in subject_ids],
            "val_fold": [val_fold.get(s, -1) for s in subject_ids],
        },
        index=subject_ids.index,
    )


def fold_membership(index: pd.DataFrame, fold: int) -> pd.Series:
    """`train` / `val` / `test` for each cache row in the given fold."""
    out = pd.Series("train", index=index.index)
    out[index["val_fold"] == fold] = "val"
    out[index["split"] == "test"] = "test"
    return out
