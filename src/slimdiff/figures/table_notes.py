"""The notes under the Markdown table: what its columns mean, said only when the table has them.

Kept apart from the renderers: they are prose about the numbers, and each note's condition (a Dice column, a
merged pool, a paired difference, an undefined value) is read from the table itself.
"""

from __future__ import annotations

import pandas as pd

from slimdiff.figures.cells import has_dice, metric_columns
from slimdiff.figures.labels import CONFIGURATION, DIFFERENCE, REAL_ONLY, folds_text
from slimdiff.names import MIN_LESION_PX, MIN_LESIONS

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


def notes(table: pd.DataFrame, sections: bool) -> str:
    """The lines under the Markdown table; without the utility columns, exactly as before they existed."""
    dice = has_dice(table)
    labels = [m.label for m in metric_columns(table)]
    ranked = ", ".join(labels[:-1]) + " and " + labels[-1]
    lower = "Lower is better for " + (ranked if dice else "every metric")
    text = f"{lower}; best in bold, worst underlined; mean ± std over replicas."
    if sections:
        text = (
            f"{lower}; mean ± std over replicas (across folds: over the fold means);"
            " best in bold and worst underlined within each section."
        )
    if dice:
        text += " Higher is better for the Dice columns, which are not ranked."
    text += "\n\n" + LESION_NOTE
    if dice:
        folds = table.loc[table["kind"] == REAL_ONLY, "fold"].iloc[0]
        several = "," in folds
        reference = folds_text(folds) + ("; mean ± population std of its per-fold means" if several else "")
        text += "\n\n" + DICE_NOTE.format(folds=reference)
    kind = table["kind"] if "kind" in table else pd.Series(CONFIGURATION, index=table.index)
    differences = kind == DIFFERENCE
    if (
        table.loc[~kind.isin([DIFFERENCE, REAL_ONLY]), [f"{m.name}_mean" for m in metric_columns(table)]]
        .isna()
        .any(axis=None)
    ):
        text += "\n\n" + NOT_AVAILABLE
    if "mmd_pl_mean" in table:
        text += "\n\n" + MMD_PL_NOTE
    if "scoring" in table and (table["scoring"] == "merged").any():
        text += "\n\n" + MERGED_NOTE
    if differences.any():
        text += "\n\n" + REGIME_B_NOTE
    return text
