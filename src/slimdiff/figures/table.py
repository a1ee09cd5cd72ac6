"""The paper table: one row per configuration, mean +/- std over replicas, best bold, worst underlined.

All four metrics are "lower is better". Rows are configurations (prediction type x p x self-conditioning);
the real-vs-real baseline is the last row and is not ranked. Written as CSV (plain numbers), Markdown and
LaTeX (results/paper/table.{csv,md,tex}).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from slimdiff.io import write_text
from slimdiff.metrics.morphology import MIN_LESION_PX, MIN_LESIONS

METRIC_COLUMNS = [("kid", "KID"), ("lpips", "LPIPS"), ("mmd_mf", "MMD-MF"), ("fid", "FID")]
PRED_ORDER = {"epsilon": 0, "v": 1, "x0": 2}
PRED_LABEL = {"epsilon": "ε", "v": "v", "x0": "x0"}
PRED_TEX = {"epsilon": r"$\epsilon$", "v": r"$\mathbf{v}$", "x0": r"$\mathbf{x}_0$"}


def parse_run(run: str) -> dict:
    """x0_lp1.5_sc0.5[-variant] -> prediction, p, sc, variant."""
    name, _, variant = run.partition("-")
    pred, lp, sc = name.split("_")
    return {"prediction": pred, "p": float(lp[2:]), "sc": float(sc[2:]), "variant": variant or "shared"}


def config_table(per_replica: pd.DataFrame, baseline: dict) -> pd.DataFrame:
    """per_replica: columns run, replica, kid, lpips, mmd_mf, fid -> one row per run with mean/std columns."""
    rows = []
    for run, g in per_replica.groupby("run"):
        row = {"run": run, **parse_run(run), "replicas": len(g)}
        for m, _ in METRIC_COLUMNS:
            v = g[m].dropna()
            row[f"{m}_mean"] = float(v.mean()) if len(v) else math.nan
            row[f"{m}_std"] = float(v.std(ddof=1)) if len(v) > 1 else (0.0 if len(v) else math.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table.sort_values(
        ["variant", "prediction", "p", "sc"], key=lambda s: s.map(PRED_ORDER) if s.name == "prediction" else s
    ).reset_index(drop=True)
    base = {
        "run": "real vs real (baseline)",
        "prediction": "",
        "p": math.nan,
        "sc": math.nan,
        "variant": "",
        "replicas": 0,
    }
    for m, _ in METRIC_COLUMNS:
        base[f"{m}_mean"], base[f"{m}_std"] = baseline.get(m, math.nan), math.nan
    return pd.concat([table, pd.DataFrame([base])], ignore_index=True)


def best_worst(table: pd.DataFrame, metric: str) -> tuple[int | None, int | None]:
    """Row positions of the lowest and highest mean among configurations (baseline excluded)."""
    ranked = table.iloc[:-1][f"{metric}_mean"].dropna()
    if len(ranked) < 2:
        return (ranked.index[0] if len(ranked) else None), None
    return int(ranked.idxmin()), int(ranked.idxmax())


def _fmt(mean: float, std: float, digits: int) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


DIGITS = {"kid": 4, "lpips": 4, "mmd_mf": 3, "fid": 1}
NOT_AVAILABLE = (
    f"n/a: not computable for any replica. MMD-MF needs at least {MIN_LESIONS} lesions (connected components"
    f" of at least {MIN_LESION_PX} px in the masks thresholded at tau) among the real test masks and among the"
    " generated masks; each run's metrics/mask.json has the counts."
)


def _label(row) -> tuple[str, str]:
    if not row["prediction"]:
        return row["run"], r"Real vs real (baseline)"
    variant = f" ({row['variant']})" if row["variant"] != "shared" else ""
    md = f"{PRED_LABEL[row['prediction']]}, p={row['p']:g}, sc {row['sc']:g}{variant}"
    tex = f"{PRED_TEX[row['prediction']]} & {row['p']:g} & {row['sc']:g}{variant}"
    return md, tex


def to_markdown(table: pd.DataFrame) -> str:
    header = "| configuration | " + " | ".join(label for _, label in METRIC_COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(METRIC_COLUMNS) + 1)]
    marks = {m: best_worst(table, m) for m, _ in METRIC_COLUMNS}
    for i, row in table.iterrows():
        cells = []
        for m, _ in METRIC_COLUMNS:
            text = _fmt(row[f"{m}_mean"], row[f"{m}_std"], DIGITS[m])
            best, worst = marks[m]
            if i == best:
                text = f"**{text}**"
            elif i == worst:
                text = f"<u>{text}</u>"
            cells.append(text)
        lines.append(f"| {_label(row)[0]} | " + " | ".join(cells) + " |")
    notes = "Lower is better for every metric; best in bold, worst underlined; mean ± std over replicas."
    if table[[f"{m}_mean" for m, _ in METRIC_COLUMNS]].isna().any(axis=None):
        notes += "\n\n" + NOT_AVAILABLE
    return "\n".join(lines) + "\n\n" + notes + "\n"


def to_latex(table: pd.DataFrame) -> str:
    marks = {m: best_worst(table, m) for m, _ in METRIC_COLUMNS}
    lines = [
        r"\begin{tabular}{lll" + "c" * len(METRIC_COLUMNS) + "}",
        r"\toprule",
        "Pred. & $p$ & sc & " + " & ".join(f"{label} $\\downarrow$" for _, label in METRIC_COLUMNS) + r" \\",
        r"\midrule",
    ]
    for i, row in table.iterrows():
        if not row["prediction"]:
            lines.append(r"\midrule")
        cells = []
        for m, _ in METRIC_COLUMNS:
            text = _fmt(row[f"{m}_mean"], row[f"{m}_std"], DIGITS[m]).replace("±", r"$\pm$").replace("n/a", "--")
            best, worst = marks[m]
            if i == best:
                text = rf"\textbf{{{text}}}"
            elif i == worst:
                text = rf"\underline{{{text}}}"
            cells.append(text)
        label = _label(row)[1] if row["prediction"] else r"\multicolumn{3}{l}{Real vs real (baseline)}"
        lines.append(f"{label} & " + " & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_tables(per_replica: pd.DataFrame, baseline: dict, out_dir: str | Path) -> pd.DataFrame:
    out_dir = Path(out_dir)
    table = config_table(per_replica, baseline)
    write_text(out_dir / "table.csv", table.to_csv(index=False))
    write_text(out_dir / "table.md", to_markdown(table))
    write_text(out_dir / "table.tex", to_latex(table))
    return table
