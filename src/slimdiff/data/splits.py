"""Subject-level splits: a fixed test set and k folds over the rest, stratified by lesion burden.

Splits are data (`splits.json`), drawn once with a seed, so every later stage reads the same subjects.
Stratification: controls form one stratum; patients are cut into `burden_strata` quantile strata of their
lesion burden (share of cached slices that carry lesion). A seeded *proportional interleaving* of the
strata orders all subjects so that every prefix has about the cohort's mix; the test set is a prefix and
the folds are dealt round-robin from the rest, which keeps folds the same size and equally mixed.

Other fold methods (`method`), for the evaluation protocols of the config (slimdiff.experiments): `kfold`,
upstream's camera-ready folds (a shuffled k-fold over the sorted pool, as sklearn's KFold(k, shuffle=True,
random_state=seed): the same subjects per fold as upstream's `slimdiff-kfold` given the same pool); `subjects`,
the validation subjects of each fold given by the user. A protocol's split is written as a view of the cache
(write_split_view): the cache's arrays linked, its index with the protocol's fold columns, so every stage that
reads a cache reads the protocol's folds without knowing about protocols.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

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

    fold_method = cfg.get("method", "stratified")
    if fold_method == "kfold":
        val_sets = kfold_validation(sorted(pool), cfg["n_folds"], cfg["seed"])
    elif fold_method == "subjects":
        val_sets = given_validation(pool, test, cfg.get("folds") or [])
    else:
        val_sets = stratified_validation(pool, cfg["n_folds"], cfg["val_fraction"])
    k = len(val_sets)
    if not pool or any(len(pool) - len(v) == 0 for v in val_sets):
        raise ConfigError(f"too few subjects ({len(subjects)}) for a test set plus training subjects")
    folds = [{"fold": i, "train": sorted(set(pool) - v), "val": sorted(v)} for i, v in enumerate(val_sets)]
    return {
        "seed": cfg["seed"],
        "test_method": method,
        "fold_method": fold_method,
        "n_folds": k,
        "test": test,
        "folds": folds,
        "strata": {s: int(strata[s]) for s in sorted(strata.index)},
    }


def stratified_validation(pool: list[str], k: int, val_fraction: float) -> list[set[str]]:
    """Validation sets from the stratified order: k round-robin folds, or (k = 1) its first val_fraction."""
    if k == 1:
        n_val = max(1, int(round(val_fraction * len(pool)))) if len(pool) > 1 else 0
        return [set(pool[:n_val])]
    if len(pool) < k:
        raise ConfigError(f"{len(pool)} non-test subjects cannot fill {k} folds; lower n_folds")
    return [set(pool[i::k]) for i in range(k)]


def kfold_validation(sorted_pool: list[str], k: int, seed: int) -> list[set[str]]:
    """Upstream's camera-ready folds: the sorted pool's positions shuffled by the legacy NumPy generator seeded
    with `seed`, then cut into k consecutive blocks, the first n mod k one subject larger (the rule of sklearn's
    KFold(k, shuffle=True, random_state=seed)); block i validates fold i. k = 1 is not a k-fold."""
    n = len(sorted_pool)
    if k < 2:
        raise ConfigError("method kfold needs n_folds >= 2 (a single split is method stratified with n_folds 1)")
    if n < k:
        raise ConfigError(f"{n} non-test subjects cannot fill {k} folds; lower n_folds")
    positions = np.arange(n)
    np.random.RandomState(seed).shuffle(positions)
    sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
    bounds = np.cumsum([0, *sizes])
    return [{sorted_pool[j] for j in positions[bounds[i] : bounds[i + 1]]} for i in range(k)]


def given_validation(pool: list[str], test: list[str], folds: list[list[str]]) -> list[set[str]]:
    """The user's validation subjects per fold, checked against the pool (a test subject never validates)."""
    if not folds:
        raise ConfigError("method subjects needs `folds`: the validation subjects of each fold")
    known, held_out = set(pool), set(test)
    out = []
    for i, names in enumerate(folds):
        in_test = sorted(set(names) & held_out)
        if in_test:
            raise ConfigError(f"split folds[{i}]: {', '.join(in_test)} are test subjects, not in the training pool")
        unknown = sorted(set(names) - known)
        if unknown:
            raise ConfigError(f"split folds[{i}]: {', '.join(unknown)} are not subjects of the cache")
        out.append(set(names))
    return out


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


def write_split_view(cache_dir: str | Path, out_dir: str | Path, split_cfg: dict, protocol: str) -> dict:
    """A protocol's split as a view of the cache in `out_dir`: the same arrays (relative symlinks), the same test
    subjects, this split's folds in index.csv (`val_fold`), splits.json and cache_meta.json. Returns the splits.

    The view is a complete cache to load_cache, so training, sampling and metrics read the protocol's folds with
    no protocol logic of their own (upstream pointed each fold's training at a folds/fold_k copy of its split
    CSVs in the same way).
    """
    from slimdiff.data.cache import load_cache
    from slimdiff.io import write_json, write_text

    cache = load_cache(cache_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = cache.index.drop(columns=["split", "val_fold"])
    subjects = index.groupby("subject").agg(group=("group", "first"), burden=("class", "mean"))
    cfg = {"method": "stratified", "n_folds": 3, "seed": 42, "burden_strata": 4, "val_fraction": 0.1, **split_cfg}
    cfg["test_fraction"] = 0.0  # unused: the test set is the cache's, given as predefined
    try:
        splits = make_splits(subjects, cfg, list(cache.splits["test"]))
    except ConfigError as err:
        raise ConfigError(f"protocols.{protocol}.split: {err}") from None
    splits.update(test_method=cache.splits.get("test_method", "predefined"), protocol=protocol)
    columns = list(cache.index.columns)
    index = pd.concat([index, subject_split_columns(splits, index["subject"])], axis=1)[columns]
    index_text = index.to_csv(index=False)
    for name in cache.meta["arrays"]:
        _link(Path(os.path.relpath(Path(cache_dir) / name, out_dir)), out_dir / name)
    meta = json.loads(json.dumps(cache.meta))
    meta["index_sha256"] = hashlib.sha256(index_text.encode()).hexdigest()
    meta["split_view"] = {"protocol": protocol, "split": split_cfg, "cache": str(Path(cache_dir))}
    if isinstance(meta.get("counts"), dict):
        meta["counts"]["folds"] = [{"train": len(f["train"]), "val": len(f["val"])} for f in splits["folds"]]
    write_text(out_dir / "index.csv", index_text)
    write_json(out_dir / "splits.json", splits)
    write_json(out_dir / "cache_meta.json", meta)  # last: the view is complete once its metadata exists
    return splits


def _link(target: Path, link: Path) -> None:
    """A relative symlink, replaced atomically when one is already there."""
    tmp = link.with_name(link.name + ".tmp-link")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target, tmp)
    os.replace(tmp, link)
