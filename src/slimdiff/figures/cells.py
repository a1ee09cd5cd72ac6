"""The paper table as cells: what each cell says and whether it is the best or worst of its section.

Why a model between the table's numbers (table.csv) and its text: Markdown and LaTeX spell a few things
differently (n/a or --, d_z or $d_z$, bold or \\textbf) but must never disagree on the content or on which cell
is marked. Here a cell is text parts plus symbols and a mark; render.py spells them. Nothing here is Markdown
or LaTeX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import Enum

import pandas as pd

from slimdiff.figures.labels import (
    BASELINE,
    CONFIGURATION,
    DICE_COLUMNS,
    DICE_DIGITS,
    DIFFERENCE,
    LESION_HEADERS,
    REAL_ONLY,
    REFERENCE_KINDS,
    family_title,
    folds_text,
)
from slimdiff.names import METRIC, METRICS, Metric


class Sym(Enum):
    """What the formats spell differently; every other character is text (render.py escapes it for LaTeX)."""

    NA = "n/a"  # undefined: not computable
    DZ = "d_z"  # Cohen's d_z
    P = "p"  # a p-value


class Mark(Enum):
    NONE = "none"
    BEST = "best"  # lowest mean of its section: bold
    WORST = "worst"  # highest mean of its section: underlined


Part = str | Sym


@dataclass(frozen=True)
class Cell:
    """One cell: its parts in order (text and symbols) and its mark. No parts: a blank cell."""

    parts: tuple[Part, ...] = ()
    mark: Mark = Mark.NONE

    @classmethod
    def text(cls, *parts: Part) -> Cell:
        return cls(tuple(p for p in parts if p != ""))

    @classmethod
    def na(cls) -> Cell:
        """Not computable."""
        return cls((Sym.NA,))

    @classmethod
    def number(cls, mean: float, std: float, digits: int) -> Cell:
        """mean ± std in fixed decimals, a bare mean when the std is undefined, n/a when the mean is; a value of
        10,000 or more (an MMD-MF of masks that are noise) in powers of ten."""
        if math.isnan(mean):
            return cls.na()
        spec = _spec(mean, digits)
        return cls.text(f"{mean:{spec}}", "" if math.isnan(std) else f" ± {std:{spec}}")

    def marked(self, mark: Mark) -> Cell:
        return replace(self, mark=mark)


def _spec(mean: float, digits: int) -> str:
    return ".2e" if abs(mean) >= 1e4 else f".{digits}f"


@dataclass(frozen=True)
class Column:
    header: str
    better: str | None = None  # "lower" or "higher" where a direction applies (the LaTeX header shows it)


@dataclass(frozen=True)
class Label:
    """A row's label. A configuration (or a paired difference, `other` set) names its prediction type, p and sc;
    a reference row (real only, baseline) is only `text`."""

    text: str = ""
    prediction: str = ""
    p: float = math.nan
    sc: float = math.nan
    settings: tuple[str, ...] = ()  # what sets a configuration apart besides prediction, p, sc
    other: str = ""  # a paired difference: the variant compared with shared
    folds: str = ""  # a paired difference: its paired folds, "0, 1, 2"


@dataclass(frozen=True)
class Row:
    label: Label
    cells: tuple[Cell, ...]
    section: str | None = None  # the title of the section this row opens
    reference: bool = False  # real only or baseline: set apart below the ranked rows


@dataclass(frozen=True)
class TableView:
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]


def metric_columns(table: pd.DataFrame) -> list[Metric]:
    """The metric columns this table has (MMD-PL only when its metrics were computed)."""
    return [m for m in METRICS if f"{m.name}_mean" in table]


def has_sections(table: pd.DataFrame) -> bool:
    """More than one family: the rows get section titles. The reference rows (family "") are not a family."""
    return table.loc[table["family"] != "", "family"].nunique() > 1


def has_dice(table: pd.DataFrame) -> bool:
    """Whether the table has the utility columns: only when summary.json had the utility section."""
    return f"{DICE_COLUMNS[0][1]}_mean" in table


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


def table_view(table: pd.DataFrame) -> TableView:
    """The cells of every row of a config_table, marked, with the rows that open a section titled."""
    metrics = metric_columns(table)
    dice = has_dice(table)
    columns = [Column(m.label, "lower") for m in metrics] + [Column(h) for h in LESION_HEADERS]
    columns += [Column(header, "higher") for _, _, header in DICE_COLUMNS] if dice else []
    marks = {m.name: best_worst(table, m.name) for m in metrics}
    sections = has_sections(table)
    rows = []
    for i, row in table.iterrows():
        cells = []
        for m in metrics:
            best, worst = marks[m.name]
            mark = Mark.BEST if i in best else Mark.WORST if i in worst else Mark.NONE
            cells.append(_metric_cell(row, m).marked(mark))
        cells += _lesion_cells(row)
        cells += _dice_cells(row) if dice else []
        opens = sections and row["family"] and (i == 0 or row["family"] != table["family"].iloc[i - 1])
        rows.append(
            Row(
                label=_label(row),
                cells=tuple(cells),
                section=family_title(row["family"]) if opens else None,
                reference=row.get("kind") in REFERENCE_KINDS or not row["prediction"],
            )
        )
    return TableView(tuple(columns), tuple(rows))


def _metric_cell(row, metric: Metric) -> Cell:
    """A similarity metric's cell in any row; blank in the real-only row, which has no generated images."""
    kind = row.get("kind")
    if kind == REAL_ONLY:
        return Cell()
    if kind == DIFFERENCE:
        return _difference_cell(row, metric)
    mean = row[f"{metric.name}_mean"]
    # An MMD-MF that a run's few lesions leave undefined says so, with the run's mean lesion count per replica
    # (MMD-MF is computed, or not, per replica).
    n_lesions = row.get("n_lesions", math.nan)
    if metric.name == "mmd_mf" and math.isnan(mean) and row["prediction"] and not math.isnan(n_lesions):
        return Cell.text(f"too few lesions ({round(row['n_lesions'], 1):g} per replica)")
    return Cell.number(mean, row[f"{metric.name}_std"], metric.digits)


def _difference_cell(row, metric: Metric) -> Cell:
    """mean ± sd of the paired differences; d_z; on how many folds which variant did better; Wilcoxon p."""
    m = metric.name
    mean, sd, n = row[f"{m}_mean"], row[f"{m}_std"], int(row[f"{m}_n_pairs"])
    if n < 2 or math.isnan(mean):
        return Cell.text(Sym.NA, f" ({n} paired fold{'' if n == 1 else 's'})")
    spec = _spec(mean, METRIC[m].digits)
    parts: list[Part] = [f"{mean:+{spec}}" + ("" if math.isnan(sd) else f" ± {sd:{spec}}")]
    dz = row[f"{m}_dz"]
    parts += ["; ", Sym.DZ, " ", Sym.NA] if math.isnan(dz) else ["; ", Sym.DZ, f" {dz:.2f}"]
    positive, negative = int(row[f"{m}_n_positive"]), int(row[f"{m}_n_negative"])
    winner, count = ("shared", positive) if positive >= negative else (row["variant"], negative)
    parts.append(f"; {winner} better {count}/{n} ({'consistent' if row[f'{m}_sign_consistent'] else 'mixed'})")
    p = row[f"{m}_wilcoxon_p"]
    parts += ["; ", Sym.P, " "] + [Sym.NA if math.isnan(p) else f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"]
    return Cell.text(*parts)


def _dice_cells(row) -> list[Cell]:
    """The Dice columns: n/a for a configuration without a (defined) utility result, blank where Dice does not
    apply (a Regime B difference, the real-vs-real baseline)."""
    if row.get("kind") in (DIFFERENCE, BASELINE):
        return [Cell() for _ in DICE_COLUMNS]
    return [Cell.number(row[f"{c}_mean"], row[f"{c}_std"], DICE_DIGITS) for _, c, _ in DICE_COLUMNS]


def _lesion_cells(row) -> list[Cell]:
    """Share of lesion-token / lesion-free-token samples with a lesion, and the median lesion area."""
    if row.get("kind") in (DIFFERENCE, REAL_ONLY):
        return [Cell(), Cell()]
    c1, c0, area = (row.get(c, math.nan) for c in ("lesion_rate_cls1", "lesion_rate_cls0", "area_median"))
    rate = (
        Cell.na()
        if math.isnan(c1)
        else Cell.text(f"{100 * c1:.0f} %", "" if math.isnan(c0) else f" / {100 * c0:.0f} %")
    )
    return [rate, Cell.na() if math.isnan(area) else Cell.text(f"{area:.0f}")]


def _label(row) -> Label:
    kind = row.get("kind")
    if kind == REAL_ONLY:
        return Label(text=f"{REAL_ONLY.removesuffix(')')}; {folds_text(row['fold'])})")
    if not row["prediction"]:
        return Label(text=row["run"])
    config = {"prediction": row["prediction"], "p": row["p"], "sc": row["sc"]}
    if kind == DIFFERENCE:
        return Label(**config, other=row["variant"], folds=row["fold"].replace(",", ", ") or "none")
    settings = [row["variant"]] if row["variant"] != "shared" else []
    if row.get("coin") == "sample":
        settings.append("per-sample coin")
    if row.get("source") == "pretrained":
        settings.append("pretrained")
    if row.get("protocol") and isinstance(row.get("protocol"), str):
        settings.append(row["protocol"].replace("_", "-"))
    return Label(**config, settings=tuple(settings))
