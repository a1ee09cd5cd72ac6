"""The `utility` section of summary.json: every arm of every run and fold, the real-only arm per fold, and
each run's paired comparison against real-only.

    utility:
      real:       {"fold0": {per_seed: [...], summary: {metric: {mean, std}}}}
      runs:       {"x0_lp1.5_sc0.5/fold0": {"real+syn": {per_seed, summary}, "syn": {per_seed, summary}}}
      comparison: {"x0_lp1.5_sc0.5": {"real+syn": paired, "syn": paired}}   Dice on lesion slices, arm - real
      settings, tau: as the jobs ran (the same for every job)

A pair is one (fold, seed): the same test slices and the same segmenter seed in both arms, so the paired
difference keeps only what the synthetic data changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from slimdiff.io import read_json
from slimdiff.metrics.stats import paired_comparison
from slimdiff.names import fold_key, run_fold_key

REAL, SYNTHETIC_ARMS = "real", ("real+syn", "syn")
PAIRED_METRIC = "dice_lesion_slices"


def utility_section(run_files: Iterable[str | Path], real_files: Iterable[str | Path]) -> dict:
    runs = [read_json(p) for p in run_files]
    reals = [read_json(p) for p in real_files]
    real_by_fold = {int(r["fold"]): r["results"][REAL] for r in reals}
    section = {
        "real": {fold_key(fold): arm for fold, arm in sorted(real_by_fold.items())},
        "runs": {run_fold_key(r["run"], r["fold"]): {a: r["results"][a] for a in SYNTHETIC_ARMS} for r in runs},
        "comparison": {},
    }
    by_run: dict[str, list[dict]] = {}
    for r in runs:
        by_run.setdefault(r["run"], []).append(r)
    for run, reports in sorted(by_run.items()):
        section["comparison"][run] = {
            arm: paired_comparison(
                _per_fold_seed({int(r["fold"]): real_by_fold[int(r["fold"])] for r in reports}),
                _per_fold_seed({int(r["fold"]): r["results"][arm] for r in reports}),
            )
            for arm in SYNTHETIC_ARMS
        }
    first = (reals or runs or [None])[0]
    if first is not None:
        section.update(settings=first["settings"], tau=first["tau"], paired_metric=PAIRED_METRIC)
    return section


def _per_fold_seed(arms_by_fold: dict[int, dict]) -> dict[tuple[int, int], float]:
    return {
        (fold, int(s["seed"])): float("nan") if s[PAIRED_METRIC] is None else float(s[PAIRED_METRIC])
        for fold, arm in arms_by_fold.items()
        for s in arm["per_seed"]
    }
