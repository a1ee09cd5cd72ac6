"""One utility job: the arms a job trains (real-only for a fold, or real+syn and syn for a run's samples),
their slices, and the JSON report the rule writes. The CLI and the Snakemake rules both call utility_report.
"""

from __future__ import annotations

from pathlib import Path

# The synthetic pairs added to the real ones are drawn once per run, the same for every seed: the seeds then
# vary only the segmenter (initial weights, batch order, flips).
SYNTHETIC_DRAW_SEED = 0


def fold_slices(cache_dir: str | Path, fold: int) -> tuple[dict, dict]:
    """The fold's real training and test slices; a fold the cache lacks or an empty split is an input error."""
    from slimdiff.data.cache import load_cache
    from slimdiff.metrics.evaluate import real_split
    from slimdiff.utility.segmenter import UtilityDataError

    n_folds = load_cache(cache_dir).splits["n_folds"]
    if not 0 <= fold < n_folds:
        raise UtilityDataError(f"{cache_dir}: no fold {fold} (the cache has folds 0 to {n_folds - 1})")
    train, test = real_split(cache_dir, fold, "train"), real_split(cache_dir, fold, "test")
    for role, split in (("training", train), ("test", test)):
        if not len(split["images"]):
            raise UtilityDataError(f"{cache_dir}: fold {fold} has no {role} slices")
    return train, test


def synthetic_pairs(sample_files: list[Path], slice_shape: tuple[int, ...]) -> dict:
    """All replicas' synthetic pairs of one run, concatenated; none, or another slice size, is an input error."""
    import numpy as np

    from slimdiff.metrics.evaluate import load_replicas
    from slimdiff.utility.segmenter import UtilityDataError

    replicas = load_replicas(sample_files)
    named = f"{sample_files[0]}" + (f" and {len(sample_files) - 1} other sample files" if len(sample_files) > 1 else "")
    if not replicas or not sum(len(r["images"]) for r in replicas.values()):
        raise UtilityDataError(f"{named}: no synthetic samples in them")
    pairs = {k: np.concatenate([r[k] for r in replicas.values()]) for k in ("images", "masks", "class")}
    if pairs["images"].shape[1:] != tuple(slice_shape):
        raise UtilityDataError(
            f"{named}: synthetic slices are {pairs['images'].shape[1:]}, the cache's real slices {tuple(slice_shape)}"
        )
    return pairs


def _slice_counts(real: int, synthetic: int, masks, tau: float) -> dict:
    from slimdiff.utility.segmenter import binarise

    lesion = int(binarise(masks, tau).any(axis=(1, 2)).sum())
    return {"real": int(real), "synthetic": int(synthetic), "lesion_slices": lesion}


def utility_report(
    cache_dir: str | Path,
    fold: int,
    cfg: dict,
    run_name: str,
    sample_files: list[Path] | None = None,
    device: str = "cpu",
) -> dict:
    """Train and test the arms of one job: `real` without sample files, `real+syn` and `syn` with them.

    Runs on torch's current thread count; the command sets it to utility.threads.
    """
    import numpy as np

    from slimdiff import provenance
    from slimdiff.utility.segmenter import mix_real_and_synthetic, run_arms, utility_settings

    settings, tau = utility_settings(cfg), float(cfg["metrics"]["tau"])
    train, test = fold_slices(cache_dir, fold)
    real = (train["images"], train["masks"])
    if sample_files is None:
        arms = {"real": real}
        counts = {"real": _slice_counts(len(real[0]), 0, real[1], tau)}
    else:
        syn = synthetic_pairs(sample_files, train["images"].shape[1:])
        mixed = mix_real_and_synthetic(real, (syn["images"], syn["masks"]), settings["syn_ratio"], SYNTHETIC_DRAW_SEED)
        arms = {"real+syn": mixed, "syn": (syn["images"], syn["masks"])}
        counts = {
            "real+syn": _slice_counts(len(real[0]), len(mixed[0]) - len(real[0]), mixed[1], tau),
            "syn": _slice_counts(0, len(syn["images"]), syn["masks"], tau),
        }
    results = run_arms(arms, test, settings, tau, settings["seeds"], device)
    report = {
        "run": run_name,
        "fold": fold,
        "arms": list(arms),
        "seeds": list(settings["seeds"]),
        "settings": settings,
        "tau": tau,
        "training_slices": counts,
        "test_slices": {
            "total": len(test["images"]),
            "lesion": int(np.sum(test["class"] == 1)),
            "control": int(np.sum(test["class"] == 0)),
        },
        "results": results,
        "versions": provenance.versions(),
        "created": provenance.timestamp(),
    }
    if sample_files is not None:
        report["samples"] = [str(f) for f in sample_files]
        report["synthetic_draw_seed"] = SYNTHETIC_DRAW_SEED
    return report
