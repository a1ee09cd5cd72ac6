"""The words the paper table and the figures share: how prediction types, row kinds and families are named.

A module of its own so that the table's data, its renderers and the figures read one spelling (a family's
title is the same above a table section and a figure).
"""

from __future__ import annotations

from slimdiff.experiments import parse_family

PRED_ORDER = {"epsilon": 0, "v": 1, "x0": 2}
VARIANT_ORDER = {"shared": 0, "decoupled": 1, "zero_coupling": 2, "bottleneck_only": 3}
PRED_LABEL = {"epsilon": "ε", "v": "v", "x0": "x0"}
PRED_TEX = {"epsilon": r"$\epsilon$", "v": r"$\mathbf{v}$", "x0": r"$\mathbf{x}_0$"}

ACROSS_FOLDS = "across folds"
# Row kinds (table.csv column `kind`): a configuration on a fold or across folds, a Regime B paired difference,
# the segmenter trained on real slices only (utility reference), the real-vs-real baseline.
CONFIGURATION, DIFFERENCE, BASELINE = "configuration", "paired difference", "baseline"
REAL_ONLY = "real only (segmenter)"
REFERENCE_KINDS = (REAL_ONLY, BASELINE)  # rows that are references, never ranked, set apart at the bottom
# Downstream utility (summary.json `utility`): (arm, column stem, header). Dice of a segmenter on the fold's real
# test lesion slices; higher is better, unlike the similarity metrics, so these columns are never ranked.
DICE_COLUMNS = [("real+syn", "dice_real_syn", "Dice real+syn"), ("syn", "dice_syn", "Dice syn only")]
DICE_METRIC = "dice_lesion_slices"
DICE_DIGITS = 4
LESION_HEADERS = ["Lesion rate c1 / c0", "Lesion area (px)"]


def family_title(family: str) -> str:
    """'fold0@table1/shared/sc0.5' -> 'table1, fold 0, shared, sc 0.5': a section's (and a figure's) title."""
    if family == ACROSS_FOLDS:
        return "across folds: mean ± std of the per-fold means"
    f = parse_family(family)
    where = f"{f.protocol}, " if f.protocol else ""
    return f"{where}fold {f.fold}, {f.setting}, sc {f.sc_text}"


def family_order(family: str, size: int) -> tuple:
    """Larger families first (Table 1), then by protocol, fold, variant (shared first) and self-conditioning."""
    if family == ACROSS_FOLDS:
        return (1, 0, "", 0, 0, 0.0)
    f = parse_family(family)
    return (0, -size, f.protocol, f.fold, VARIANT_ORDER.get(f.variant, 9), f.sc)


def folds_text(folds: str) -> str:
    """'0' -> 'fold 0'; '0,1,2' -> 'folds 0, 1, 2'; '' -> 'no fold'."""
    if not folds:
        return "no fold"
    return ("folds " if "," in folds else "fold ") + folds.replace(",", ", ")
