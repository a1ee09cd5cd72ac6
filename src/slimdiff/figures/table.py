"""The paper table: one row per configuration and fold, mean +/- std over replicas, best bold, worst underlined.

All four metrics are "lower is better". Rows are configurations (prediction type x p x self-conditioning x
variant) on one fold, in sections by comparison family (same fold, variant, self-conditioning): Table 1 is
one such section. Best and worst are marked within a section, never across, since sections differ in more
than the compared factors. Runs on several folds get an "across folds" section; when summary.json has a
Regime B comparison (a shared run and a twin of another variant, paired by fold), that section ends with
one row per comparison: the paired difference, Cohen's d_z, sign consistency and the Wilcoxon p. The
real-vs-real baseline is the last row and is not ranked. Written as CSV (plain numbers), Markdown and LaTeX
(results/paper/table.{csv,md,tex}); with a single section the layout is exactly the paper's Table 1.

When summary.json has the downstream-utility section, two more columns give the Dice of a segmenter trained on
real + synthetic and on synthetic slices only (higher is better, so never ranked), and a "real only (segmenter)"
row just before the baseline gives the real-only arm for reference. Without that section the table is exactly
as it was before the stage existed: no Dice columns, no extra row.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from slimdiff.experiments import comparison_family, parse_run
from slimdiff.figures.labels import (
    ACROSS_FOLDS,
    BASELINE,
    CONFIGURATION,
    DICE_COLUMNS,
    DICE_METRIC,
    DIFFERENCE,
    PRED_ORDER,
    PRED_TEX,
    REAL_ONLY,
    VARIANT_ORDER,
    family_order,
)
from slimdiff.figures.render import to_latex, to_markdown
from slimdiff.io import as_float, write_text
from slimdiff.names import LESION_COLUMNS, METRICS, parse_fold_key, run_fold_key

# What other modules and the tests read from here: the table's vocabulary lives in labels.py, its text in render.py.
__all__ = [
    "ACROSS_FOLDS",
    "BASELINE",
    "CONFIGURATION",
    "DIFFERENCE",
    "PRED_ORDER",
    "PRED_TEX",
    "REAL_ONLY",
    "config_table",
    "to_latex",
    "to_markdown",
    "write_tables",
]


def config_table(
    per_replica: pd.DataFrame, baseline: dict, regime_b: dict | None = None, utility: dict | None = None
) -> pd.DataFrame:
    """per_replica: columns run, fold, replica, kid, lpips, mmd_mf, fid -> one row per (run, fold).

    Rows are grouped by comparison family (same fold, variant, self-conditioning; the largest first, which is
    Table 1 in the paper's config). A run trained on several folds also gets an "across folds" row: the mean
    and population std (ddof 0, as the camera-ready tables) of its per-fold means. `regime_b` (summary.json's
    section of that name) adds a paired-difference row per comparison at the end of the across-folds rows
    (difference_rows). `utility` (summary.json's section of that name) adds the Dice columns (dice_*_mean,
    dice_*_std) and the real-only row (real_only_row) just before the baseline; without it neither exists.
    The real-vs-real baseline is the last row.
    """
    metrics = [m.name for m in METRICS if not m.optional or m.name in per_replica]
    rows = []
    for (run, fold), g in per_replica.groupby(["run", "fold"]):
        row = {"run": run, **parse_run(run), "fold": str(fold), "family": comparison_family(run, fold)}
        row["kind"] = CONFIGURATION
        row["replicas"] = len(g)
        if "scoring" in g:  # Regime A (per replica) or B (one merged pool per fold)
            row["scoring"] = str(g["scoring"].iloc[0])
        for m in metrics:
            v = g[m].dropna()
            row[f"{m}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else math.nan)
            if len(g) == 1 and f"{m}_within" in g and pd.notna(g[f"{m}_within"].iloc[0]):  # a merged pool
                row[f"{m}_std"] = float(g[f"{m}_within"].iloc[0])  # its spread over subsets or pairs, as upstream
        for m in LESION_COLUMNS:
            row[m] = float(g[m].mean()) if m in g and g[m].notna().any() else math.nan
        if utility:
            row.update(run_dice(utility, run, str(fold)))
        rows.append(row)
    per_fold = pd.DataFrame(rows)
    for run, g in per_fold.groupby("run"):
        if len(g) < 2:
            continue
        row = {"run": run, **parse_run(run), "fold": ",".join(g["fold"]), "family": ACROSS_FOLDS}
        row["kind"] = CONFIGURATION
        row["replicas"] = int(g["replicas"].sum())
        stems = metrics + ([c for _, c, _ in DICE_COLUMNS] if utility else [])
        for m in stems:
            row[f"{m}_mean"], row[f"{m}_std"] = across_folds(g[f"{m}_mean"])
        for m in LESION_COLUMNS:
            row[m] = float(g[m].mean()) if g[m].notna().any() else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    size = table.groupby("family")["run"].transform("size")
    table = table.assign(
        _family_rank=[family_order(f, n) for f, n in zip(table["family"], size, strict=True)],
        _pred=table["prediction"].map(PRED_ORDER),
        _variant=[(VARIANT_ORDER.get(v, 9), v) for v in table["variant"]],
    )
    table = (
        table.sort_values(["_family_rank", "_variant", "_pred", "p", "sc"])
        .drop(columns=["_family_rank", "_pred", "_variant"])
        .reset_index(drop=True)
    )
    differences = difference_rows(regime_b, metrics)
    if differences:
        table = pd.concat([table, pd.DataFrame(differences)], ignore_index=True)
    if utility:
        table = pd.concat([table, pd.DataFrame([real_only_row(utility)])], ignore_index=True)
    base = {
        "run": "real vs real (baseline)",
        "prediction": "",
        "p": math.nan,
        "sc": math.nan,
        "variant": "",
        "fold": "",
        "family": "",
        "kind": BASELINE,
        "replicas": 0,
    }
    for m in metrics:
        base[f"{m}_mean"], base[f"{m}_std"] = as_float(baseline.get(m)), math.nan  # null (undefined) -> NaN
    for m in LESION_COLUMNS:
        value = baseline.get(m)
        base[m] = math.nan if value is None else float(value)
    return pd.concat([table, pd.DataFrame([base])], ignore_index=True)


def across_folds(fold_means: pd.Series) -> tuple[float, float]:
    """Mean and population std (ddof 0, as the camera-ready tables) of per-fold means; undefined folds left out."""
    v = fold_means.dropna()
    return (float(v.mean()), float(v.std(ddof=0))) if len(v) else (math.nan, math.nan)


def arm_dice(arm: dict | None) -> tuple[float, float]:
    """An arm's Dice on the real test lesion slices, mean and sample std over seeds as summary.json gives them.

    null (undefined: fewer than 2 seeds for the std, a seed without a test lesion pixel for both) and a
    missing arm read as NaN, which the cells show as a bare mean or n/a.
    """
    entry = ((arm or {}).get("summary") or {}).get(DICE_METRIC) or {}
    return as_float(entry.get("mean")), as_float(entry.get("std"))


def run_dice(utility: dict, run: str, fold: str) -> dict:
    """The Dice columns of one run on one fold: NaN where the utility stage has no result for them."""
    arms = (utility.get("runs") or {}).get(run_fold_key(run, fold)) or {}
    out = {}
    for arm, column, _ in DICE_COLUMNS:
        out[f"{column}_mean"], out[f"{column}_std"] = arm_dice(arms.get(arm))
    return out


def real_only_row(utility: dict) -> dict:
    """The segmenter trained on real slices only: the reference for both Dice columns, so it fills both.

    One fold: that fold's mean ± std over seeds. Several folds: the mean ± population std of the per-fold
    means, as the across-folds rows; `fold` lists the folds either way, and the label says them.
    """
    real = utility.get("real") or {}
    dice_by_fold = {parse_fold_key(key): arm_dice(arm) for key, arm in real.items()}
    folds = sorted(dice_by_fold)
    dice = [dice_by_fold[f] for f in folds]
    mean, std = dice[0] if len(dice) == 1 else across_folds(pd.Series([m for m, _ in dice], dtype=float))
    row = {
        "run": REAL_ONLY,
        "prediction": "",
        "p": math.nan,
        "sc": math.nan,
        "variant": "",
        "fold": ",".join(map(str, folds)),
        "family": "",
        "kind": REAL_ONLY,
        "replicas": 0,
    }
    for m in METRICS:
        if not m.optional:  # an optional column exists only when the runs' metrics have it
            row[f"{m.name}_mean"], row[f"{m.name}_std"] = math.nan, math.nan
    for m in LESION_COLUMNS:
        row[m] = math.nan
    for _, column, _ in DICE_COLUMNS:
        row[f"{column}_mean"], row[f"{column}_std"] = mean, std
    return row


def difference_rows(regime_b: dict | None, metrics: list[str] | None = None) -> list[dict]:
    """One across-folds row per Regime B comparison (summary.json `regime_b`, as written or as read back).

    The metric columns hold the paired difference delta = other variant - shared over the paired folds (mean
    and sample std), with {metric}_dz, _n_pairs, _n_positive (folds where shared is better), _sign_consistent
    and _wilcoxon_p beside them; `fold` lists the paired folds. A comparison with fewer than 2 paired folds
    keeps its row with n/a cells, so a missing pair shows.
    """
    rows = []
    for shared, comparisons in (regime_b or {}).items():
        for comparison in comparisons.values():
            other = next(v for v in comparison["runs"] if v != "shared")
            folds = [int(f) for f in comparison.get("paired_folds") or []]
            row = {
                "run": f"{shared}: {other} - shared",
                **parse_run(shared),
                "variant": other,
                "fold": ",".join(map(str, folds)),
                "family": ACROSS_FOLDS,
                "kind": DIFFERENCE,
                "replicas": 0,
            }
            for m in metrics or [m.name for m in METRICS if not m.optional]:
                result = comparison.get(m) or {}
                difference = result.get("difference") or {}
                row[f"{m}_mean"] = as_float(difference.get("mean"))
                row[f"{m}_std"] = as_float(difference.get("sd"))
                row[f"{m}_dz"] = as_float(result.get("d_z"))
                row[f"{m}_n_pairs"] = int(result.get("n_pairs", len(folds)))
                row[f"{m}_n_positive"] = as_float(result.get("n_positive"))
                row[f"{m}_n_negative"] = as_float(result.get("n_negative"))
                row[f"{m}_sign_consistent"] = result.get("sign_consistent")
                row[f"{m}_wilcoxon_p"] = as_float(result.get("wilcoxon_p"))
            for m in LESION_COLUMNS:
                row[m] = math.nan
            rows.append(row)
    return rows


def write_tables(
    per_replica: pd.DataFrame,
    baseline: dict,
    out_dir: str | Path,
    regime_b: dict | None = None,
    utility: dict | None = None,
) -> pd.DataFrame:
    """table.csv (plain numbers, a `kind` column), table.md and table.tex; `regime_b` and `utility` from
    summary.json (either may be absent: no rows, no columns for it)."""
    out_dir = Path(out_dir)
    table = config_table(per_replica, baseline, regime_b, utility)
    write_text(out_dir / "table.csv", table.to_csv(index=False))
    write_text(out_dir / "table.md", to_markdown(table))
    write_text(out_dir / "table.tex", to_latex(table))
    return table
