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
from slimdiff.io import as_float, write_text
from slimdiff.metrics.morphology import MIN_LESION_PX, MIN_LESIONS

# KID | LPIPS | MMD-MF | MMD-PL, the camera-ready table's columns, then FID. MMD-PL is a column only when the
# metrics have it (summary.csv written since it was computed), so older results keep their table.
METRIC_COLUMNS = [("kid", "KID"), ("lpips", "LPIPS"), ("mmd_mf", "MMD-MF"), ("mmd_pl", "MMD-PL"), ("fid", "FID")]
OPTIONAL_METRICS = {"mmd_pl"}
# Not ranked: how many lesions a run draws (metrics/lesion_stats.py), against the real test set's own values.
LESION_COLUMNS = ["n_lesions", "lesion_rate_cls1", "lesion_rate_cls0", "area_median"]
PRED_ORDER = {"epsilon": 0, "v": 1, "x0": 2}
VARIANT_ORDER = {"shared": 0, "decoupled": 1, "zero_coupling": 2, "bottleneck_only": 3}
PRED_LABEL = {"epsilon": "ε", "v": "v", "x0": "x0"}
PRED_TEX = {"epsilon": r"$\epsilon$", "v": r"$\mathbf{v}$", "x0": r"$\mathbf{x}_0$"}


ACROSS_FOLDS = "across folds"
# Row kinds (column `kind`): a configuration on a fold or across folds, a Regime B paired difference, the
# segmenter trained on real slices only (utility reference), the real-vs-real baseline.
CONFIGURATION, DIFFERENCE, BASELINE = "configuration", "paired difference", "baseline"
REAL_ONLY = "real only (segmenter)"
# Downstream utility (summary.json `utility`): (arm, column stem, header). Dice of a segmenter on the fold's real
# test lesion slices; higher is better, unlike the metrics above, so these columns are never ranked.
DICE_COLUMNS = [("real+syn", "dice_real_syn", "Dice real+syn"), ("syn", "dice_syn", "Dice syn only")]
DICE_METRIC = "dice_lesion_slices"


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
    metrics = [(m, label) for m, label in METRIC_COLUMNS if m not in OPTIONAL_METRICS or m in per_replica]
    rows = []
    for (run, fold), g in per_replica.groupby(["run", "fold"]):
        row = {"run": run, **parse_run(run), "fold": str(fold), "family": comparison_family(run, fold)}
        row["kind"] = CONFIGURATION
        row["replicas"] = len(g)
        if "scoring" in g:  # Regime A (per replica) or B (one merged pool per fold)
            row["scoring"] = str(g["scoring"].iloc[0])
        for m, _ in metrics:
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
        stems = [m for m, _ in metrics] + ([c for _, c, _ in DICE_COLUMNS] if utility else [])
        for m in stems:
            row[f"{m}_mean"], row[f"{m}_std"] = across_folds(g[f"{m}_mean"])
        for m in LESION_COLUMNS:
            row[m] = float(g[m].mean()) if g[m].notna().any() else math.nan
        rows.append(row)
    table = pd.DataFrame(rows)
    size = table.groupby("family")["run"].transform("size")
    table = table.assign(
        _family_rank=[_family_order(f, n) for f, n in zip(table["family"], size, strict=True)],
        _pred=table["prediction"].map(PRED_ORDER),
        _variant=[(VARIANT_ORDER.get(v, 9), v) for v in table["variant"]],
    )
    table = (
        table.sort_values(["_family_rank", "_variant", "_pred", "p", "sc"])
        .drop(columns=["_family_rank", "_pred", "_variant"])
        .reset_index(drop=True)
    )
    differences = difference_rows(regime_b, [m for m, _ in metrics])
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
    for m, _ in metrics:
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
    arms = (utility.get("runs") or {}).get(f"{run}/fold{fold}") or {}
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
    folds = sorted(int(f.removeprefix("fold")) for f in real)
    dice = [arm_dice(real[f"fold{f}"]) for f in folds]
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
    for m, _ in METRIC_COLUMNS:
        if m not in OPTIONAL_METRICS:  # an optional column exists only when the runs' metrics have it
            row[f"{m}_mean"], row[f"{m}_std"] = math.nan, math.nan
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
            for m in metrics or [m for m, _ in METRIC_COLUMNS if m not in OPTIONAL_METRICS]:
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


def _family_order(family: str, size: int) -> tuple:
    """Larger families first (Table 1), then by protocol, fold, variant (shared first) and self-conditioning."""
    if family == ACROSS_FOLDS:
        return (1, 0, "", 0, 0, 0.0)
    fold, variant, sc = family.split("/")
    fold, _, protocol = fold.partition("@")
    number = int(fold.removeprefix("fold"))
    return (0, -size, protocol, number, VARIANT_ORDER.get(variant.split(",")[0], 9), float(sc.removeprefix("sc")))


def best_worst(table: pd.DataFrame, metric: str) -> tuple[set[int], set[int]]:
    """Row positions of the lowest and highest mean within each family of two or more configurations.

    Only configuration rows are ranked: differences, the real-only segmenter and the baseline are references.
    """
    best, worst = set(), set()
    ranked_rows = table[table["kind"] == CONFIGURATION] if "kind" in table else table.iloc[:-1]
    for _, g in ranked_rows.groupby("family"):
        ranked = g[f"{metric}_mean"].dropna()
        if len(ranked) >= 2 and ranked.min() < ranked.max():  # a tie marks nothing
            best.add(int(ranked.idxmin()))
            worst.add(int(ranked.idxmax()))
    return best, worst


def has_sections(table: pd.DataFrame) -> bool:
    """More than one family: the rows get section titles. The reference rows (family "") are not a family."""
    return table.loc[table["family"] != "", "family"].nunique() > 1


def has_dice(table: pd.DataFrame) -> bool:
    """Whether the table has the utility columns: only when summary.json had the utility section."""
    return f"{DICE_COLUMNS[0][1]}_mean" in table


def family_title(family: str) -> str:
    if family == ACROSS_FOLDS:
        return "across folds: mean ± std of the per-fold means"
    fold, variant, sc = family.split("/")
    fold, _, protocol = fold.partition("@")
    where = f"{protocol}, " if protocol else ""
    return f"{where}{fold.replace('fold', 'fold ')}, {variant}, sc {sc.removeprefix('sc')}"


def _fmt(mean: float, std: float, digits: int) -> str:
    """Fixed decimals; a value of 10,000 or more (an MMD-MF of masks that are noise) in powers of ten."""
    if math.isnan(mean):
        return "n/a"
    spec = ".2e" if abs(mean) >= 1e4 else f".{digits}f"
    return f"{mean:{spec}}" if math.isnan(std) else f"{mean:{spec}} ± {std:{spec}}"


def _metric_cell(row, metric: str) -> str:
    """A metric's cell; an MMD-MF that a run's few lesions leave undefined says so, with their number.

    The number is the run's mean lesion count per replica: MMD-MF is computed (or not) per replica.
    """
    mean = row[f"{metric}_mean"]
    if metric == "mmd_mf" and math.isnan(mean) and row["prediction"] and not math.isnan(row.get("n_lesions", math.nan)):
        return f"too few lesions ({round(row['n_lesions'], 1):g} per replica)"
    return _fmt(mean, row[f"{metric}_std"], DIGITS[metric])


def _is_difference(row) -> bool:
    return row.get("kind") == DIFFERENCE


def _difference_cell(row, metric: str) -> str:
    """mean ± sd of the paired differences; d_z; on how many folds which variant did better; Wilcoxon p."""
    mean, sd, n = row[f"{metric}_mean"], row[f"{metric}_std"], int(row[f"{metric}_n_pairs"])
    if n < 2 or math.isnan(mean):
        return f"n/a ({n} paired fold{'' if n == 1 else 's'})"
    spec = ".2e" if abs(mean) >= 1e4 else f".{DIGITS[metric]}f"
    text = f"{mean:+{spec}}" + ("" if math.isnan(sd) else f" ± {sd:{spec}}")
    dz = row[f"{metric}_dz"]
    text += "; d_z n/a" if math.isnan(dz) else f"; d_z {dz:.2f}"
    positive, negative = int(row[f"{metric}_n_positive"]), int(row[f"{metric}_n_negative"])
    winner, count = ("shared", positive) if positive >= negative else (row["variant"], negative)
    text += f"; {winner} better {count}/{n} ({'consistent' if row[f'{metric}_sign_consistent'] else 'mixed'})"
    p = row[f"{metric}_wilcoxon_p"]
    return text + ("; p n/a" if math.isnan(p) else f"; p {p:.2f}" if p >= 0.01 else f"; p {p:.1e}")


def _cell(row, metric: str) -> str:
    """A similarity metric's cell in any row; blank in the real-only row, which has no generated images."""
    if row.get("kind") == REAL_ONLY:
        return ""
    return _difference_cell(row, metric) if _is_difference(row) else _metric_cell(row, metric)


def _dice_cells(row) -> list[str]:
    """The Dice columns: n/a for a configuration without a (defined) utility result, blank where Dice does not
    apply (a Regime B difference, the real-vs-real baseline)."""
    if _is_difference(row) or row.get("kind") == BASELINE:
        return ["" for _ in DICE_COLUMNS]
    return [_fmt(row[f"{c}_mean"], row[f"{c}_std"], DICE_DIGITS) for _, c, _ in DICE_COLUMNS]


def _lesion_cells(row) -> tuple[str, str]:
    """Share of lesion-token / lesion-free-token samples with a lesion, and the median lesion area."""
    c1, c0, area = (
        row.get("lesion_rate_cls1", math.nan),
        row.get("lesion_rate_cls0", math.nan),
        row.get("area_median", math.nan),
    )
    if _is_difference(row) or row.get("kind") == REAL_ONLY:
        return "", ""
    rate = "n/a" if math.isnan(c1) else f"{100 * c1:.0f} %" + ("" if math.isnan(c0) else f" / {100 * c0:.0f} %")
    return rate, "n/a" if math.isnan(area) else f"{area:.0f}"


DIGITS = {"kid": 4, "lpips": 4, "mmd_mf": 3, "mmd_pl": 3, "fid": 1}
DICE_DIGITS = 4
LESION_HEADERS = ["Lesion rate c1 / c0", "Lesion area (px)"]
LESION_NOTE = (
    "Lesion rate: share of lesion-token (class 1) / lesion-free-token (class 0) samples whose mask holds a lesion"
    f" (a component of at least {MIN_LESION_PX} px at tau); lesion area: median area of a replica's lesions, mean"
    " over replicas. Not ranked;"
    " the baseline row gives the real test slices' own values."
)
NOT_AVAILABLE = (
    f"n/a: not computable for any replica. MMD-MF needs at least {MIN_LESIONS} lesions (connected components"
    f" of at least {MIN_LESION_PX} px in the masks thresholded at tau) among the real test masks and among the"
    " generated masks; each run's metrics/mask.json has the counts."
)


DICE_NOTE = (
    "Dice real+syn / Dice syn only (downstream utility): Dice on the fold's real test lesion slices of a"
    " segmenter trained on the fold's real training slices plus the run's synthetic image-mask pairs / on the"
    " synthetic pairs only; mean ± sample std over segmenter seeds (across folds: mean ± population std of the"
    " per-fold means, over the folds with a result). The real only (segmenter) row is the same segmenter"
    " trained on the real training slices alone, for reference ({folds}). Higher is better; these columns are"
    " not ranked. n/a: no defined result for that run and fold. Per-seed values, lesion-wise sensitivity, false"
    " positives per control slice and the paired Wilcoxon tests against real only are in summary.json (utility)."
)


REGIME_B_NOTE = (
    "Paired difference (Regime B, across folds): two bottleneck variants of one configuration compared fold by"
    " fold. A run's value on a fold is its mean over replicas; delta = other variant - shared on each fold both"
    " have (listed in the row label), so a positive delta means shared did better. Cells: mean ± sample std"
    " (ddof 1) of the deltas; Cohen's d_z = mean / std of the deltas; on how many folds each variant did better,"
    " consistent when every delta has the same non-zero sign; two-sided Wilcoxon signed-rank p (exact: with 3"
    " folds it cannot go below 0.25), given for completeness, not as a significance claim. The architecture rows"
    " above give mean ± population std over all their folds; the sample std of each architecture over the paired"
    " folds and Cliff's delta are in summary.json (regime_b)."
)


MMD_PL_NOTE = (
    "MMD-PL (paired lesions, camera-ready): per lesion of each generated mask, five features of its own image"
    " (contrast to a 5-px ring, z-score in the brain, texture, edge alignment, bright fraction), compared with the"
    " real test lesions' by the cubic-kernel MMD on features z-scored with the real ones; per-feature W1 and the"
    " bright fraction are in each run's metrics/mask.json (paired_lesion)."
)
MERGED_NOTE = (
    "Merged-pool runs (a protocol with scoring regime merged, Regime B as upstream's camera-ready table): all"
    " replicas of a run and fold pooled and scored once, so a fold has one value, given ± the pool's own spread"
    " over subsets (KID, MMD-MF, MMD-PL) or pairs (LPIPS) as upstream's per-fold table; the across-folds rows give"
    " mean ± population std of the per-fold values."
)


def metric_columns(table: pd.DataFrame) -> list[tuple[str, str]]:
    """The metric columns this table has (MMD-PL only when its metrics were computed)."""
    return [(m, label) for m, label in METRIC_COLUMNS if f"{m}_mean" in table]


def _folds_text(folds: str) -> str:
    """'0' -> 'fold 0'; '0,1,2' -> 'folds 0, 1, 2'; '' -> 'no fold'."""
    if not folds:
        return "no fold"
    return ("folds " if "," in folds else "fold ") + folds.replace(",", ", ")


def _label(row) -> tuple[str, str]:
    """(Markdown, LaTeX) row label; the LaTeX one fills the three configuration columns (Pred., p, sc)."""
    if row.get("kind") == REAL_ONLY:
        text = f"{REAL_ONLY.removesuffix(')')}; {_folds_text(row['fold'])})"
        return text, rf"\multicolumn{{3}}{{l}}{{{text[0].upper() + text[1:]}}}"
    if not row["prediction"]:
        return row["run"], r"\multicolumn{3}{l}{Real vs real (baseline)}"
    if _is_difference(row):
        other, folds = row["variant"], row["fold"].replace(",", ", ") or "none"
        md = f"Δ {other} − shared: {PRED_LABEL[row['prediction']]}, p={row['p']:g}, sc {row['sc']:g} (folds {folds})"
        other_tex = other.replace("_", r"\_")
        tex = (
            rf"\multicolumn{{3}}{{l}}{{$\Delta$ {other_tex} $-$ shared, "
            rf"{PRED_TEX[row['prediction']]}, $p$ {row['p']:g}, sc {row['sc']:g} (folds {folds})}}"
        )
        return md, tex
    settings = [row["variant"]] if row["variant"] != "shared" else []
    if row.get("coin") == "sample":
        settings.append("per-sample coin")
    if row.get("source") == "pretrained":
        settings.append("pretrained")
    if row.get("protocol") and isinstance(row.get("protocol"), str):
        settings.append(row["protocol"].replace("_", "-"))
    setting = f" ({', '.join(settings)})" if settings else ""
    md = f"{PRED_LABEL[row['prediction']]}, p={row['p']:g}, sc {row['sc']:g}{setting}"
    tex = f"{PRED_TEX[row['prediction']]} & {row['p']:g} & {row['sc']:g}{setting}"
    return md, tex


def _notes(table: pd.DataFrame, sections: bool) -> str:
    """The lines under the Markdown table; without the utility columns, exactly as before they existed."""
    dice = has_dice(table)
    lower = "Lower is better for " + ("KID, LPIPS, MMD-MF and FID" if dice else "every metric")
    notes = f"{lower}; best in bold, worst underlined; mean ± std over replicas."
    if sections:
        notes = (
            f"{lower}; mean ± std over replicas (across folds: over the fold means);"
            " best in bold and worst underlined within each section."
        )
    if dice:
        notes += " Higher is better for the Dice columns, which are not ranked."
    notes += "\n\n" + LESION_NOTE
    if dice:
        folds = table.loc[table["kind"] == REAL_ONLY, "fold"].iloc[0]
        several = "," in folds
        reference = _folds_text(folds) + ("; mean ± population std of its per-fold means" if several else "")
        notes += "\n\n" + DICE_NOTE.format(folds=reference)
    kind = table["kind"] if "kind" in table else pd.Series(CONFIGURATION, index=table.index)
    differences = kind == DIFFERENCE
    if (
        table.loc[~kind.isin([DIFFERENCE, REAL_ONLY]), [f"{m}_mean" for m, _ in metric_columns(table)]]
        .isna()
        .any(axis=None)
    ):
        notes += "\n\n" + NOT_AVAILABLE
    if "mmd_pl_mean" in table:
        notes += "\n\n" + MMD_PL_NOTE
    if "scoring" in table and (table["scoring"] == "merged").any():
        notes += "\n\n" + MERGED_NOTE
    if differences.any():
        notes += "\n\n" + REGIME_B_NOTE
    return notes


def to_markdown(table: pd.DataFrame) -> str:
    dice = [header for _, _, header in DICE_COLUMNS] if has_dice(table) else []
    columns = metric_columns(table)
    headers = [label for _, label in columns] + LESION_HEADERS + dice
    lines = ["| configuration | " + " | ".join(headers) + " |", "|" + "---|" * (len(headers) + 1)]
    marks = {m: best_worst(table, m) for m, _ in columns}
    sections = has_sections(table)
    for i, row in table.iterrows():
        if sections and row["family"] and (i == 0 or row["family"] != table["family"].iloc[i - 1]):
            lines.append(f"| *{family_title(row['family'])}* |" + " |" * len(headers))
        cells = []
        for m, _ in columns:
            text = _cell(row, m)
            best, worst = marks[m]
            if i in best:
                text = f"**{text}**"
            elif i in worst:
                text = f"<u>{text}</u>"
            cells.append(text)
        cells += _lesion_cells(row)
        cells += _dice_cells(row) if dice else []
        lines.append(f"| {_label(row)[0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + _notes(table, sections) + "\n"


def to_latex(table: pd.DataFrame) -> str:
    metrics = metric_columns(table)
    marks = {m: best_worst(table, m) for m, _ in metrics}
    dice = [f"{header} $\\uparrow$" for _, _, header in DICE_COLUMNS] if has_dice(table) else []
    columns = 3 + len(metrics) + len(LESION_HEADERS) + len(dice)
    lines = [
        r"\begin{tabular}{lll" + "c" * (columns - 3) + "}",
        r"\toprule",
        "Pred. & $p$ & sc & "
        + " & ".join([f"{label} $\\downarrow$" for _, label in metrics] + LESION_HEADERS + dice)
        + r" \\",
        r"\midrule",
    ]
    sections = has_sections(table)
    for i, row in table.iterrows():
        if not row["prediction"]:  # the reference rows (real-only segmenter, baseline): one rule above them
            if i == 0 or table["prediction"].iloc[i - 1]:
                lines.append(r"\midrule")
        elif sections and (i == 0 or row["family"] != table["family"].iloc[i - 1]):
            if i > 0:
                lines.append(r"\midrule")
            title = family_title(row["family"]).replace("±", r"$\pm$")
            lines.append(rf"\multicolumn{{{columns}}}{{l}}{{\textit{{{title}}}}} \\")
        cells = []
        for m, _ in metrics:
            text = _cell(row, m)
            text = text.replace("±", r"$\pm$").replace("d_z", "$d_z$").replace("; p ", "; $p$ ").replace("n/a", "--")
            best, worst = marks[m]
            if i in best:
                text = rf"\textbf{{{text}}}"
            elif i in worst:
                text = rf"\underline{{{text}}}"
            cells.append(text)
        cells += [c.replace("%", r"\%").replace("n/a", "--") for c in _lesion_cells(row)]
        cells += [c.replace("±", r"$\pm$").replace("n/a", "--") for c in _dice_cells(row)] if dice else []
        lines.append(f"{_label(row)[1]} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


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
