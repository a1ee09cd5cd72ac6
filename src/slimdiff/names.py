"""The names the stages share: metrics, result columns, where each result lives, and the keys of summary.json.

Why one module: a name spelled in two places drifts apart (a metric scored but missing from the table, a file
the workflow writes that the CLI does not check, a key built one way and parsed another). The rules, the
library and the CLIs read these; the rules' path templates keep Snakemake's {wildcard} braces, and code that
needs a concrete path fills them with str.format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from os import PathLike
from pathlib import Path


@dataclass(frozen=True)
class Metric:
    """A similarity metric: its name in every result file, its header, where a replica's value sits, its decimals."""

    name: str  # key in metrics.json, summary.json, summary.csv; column stem in table.csv
    label: str  # header in the paper table and the figures
    entry_key: str  # its value in a replica's entry of image.json/mask.json and in baseline.json
    digits: int  # decimals in the paper table
    optional: bool = False  # a table column only when the metrics have it (results older than the metric do not)

    @property
    def has_spread(self) -> bool:
        """KID, LPIPS, MMD-MF and MMD-PL are means over subsets or pairs, with a `<metric>_std` beside them."""
        return self.entry_key.endswith("_mean")

    @property
    def spread_key(self) -> str:
        """The replica entry's key of that spread (the metric's own std over subsets or pairs)."""
        return self.entry_key.removesuffix("_mean") + "_std"


# In the camera-ready table's order (KID | LPIPS | MMD-MF | MMD-PL), then FID. All are lower-is-better.
METRICS = (
    Metric("kid", "KID", "kid_mean", 4),
    Metric("lpips", "LPIPS", "lpips_mean", 4),
    Metric("mmd_mf", "MMD-MF", "mmd_mf_mean", 3),
    Metric("mmd_pl", "MMD-PL", "mmd_pl_mean", 3, optional=True),
    Metric("fid", "FID", "fid", 1),
)
METRIC = {m.name: m for m in METRICS}
METRIC_NAMES = tuple(METRIC)
# The three the figures draw a panel for (similarity_metrics, coupling_by_fold), as the paper's figure.
FIGURE_METRICS = tuple(METRIC[name] for name in ("kid", "lpips", "mmd_mf"))

# Lesion counts carried from mask.json into metrics.json, summary.csv and the table (metrics/lesion_stats.py).
LESION_COLUMNS = ("n_lesions", "lesion_rate_cls1", "lesion_rate_cls0", "area_median")
# A lesion is a 4-connected mask component of at least MIN_LESION_PX pixels (MMD-MF, the lesion counts, the
# paired-lesion features); MMD-MF needs MIN_LESIONS of them on each side (the table's notes say so).
MIN_LESION_PX = 5
MIN_LESIONS = 10
# The 9 shape features of a lesion (metrics/morphology.py measures them, the morphology figures plot them).
MORPHOLOGY_FEATURES = (
    "area",
    "perimeter",
    "circularity",
    "solidity",
    "extent",
    "eccentricity",
    "major_axis_length",
    "minor_axis_length",
    "equivalent_diameter",
)

# Where each (run, fold) keeps its results, as rule path templates.
RUN_DIR = "results/runs/{run}/fold{fold}"
TRAIN_DIR = f"{RUN_DIR}/train"
SAMPLES_DIR = f"{RUN_DIR}/samples/replica{{replica}}"
METRICS_DIR = f"{RUN_DIR}/metrics"
UTILITY_DIR = f"{RUN_DIR}/utility"
UTILITY_REAL_DIR = "results/utility/real/fold{fold}"  # the real-only arm: one per fold, shared by every run
AGGREGATE_DIR = "results/metrics"  # what rule aggregate_metrics writes; the figures and the table read only it
PAPER_DIR = "results/paper"
FIGURES_DIR = "results/figures"


@dataclass(frozen=True)
class AggregatedFiles:
    """The files rule aggregate_metrics writes: as built, the file names; `in_dir` gives their paths.

    The field names are the keys of that rule's outputs and of rule figures' inputs, so the rules, the
    figures and `slimdiff-figures` name the same files the same way.
    """

    summary: str | PathLike = "summary.json"
    table: str | PathLike = "summary.csv"
    per_zbin: str | PathLike = "per_zbin.csv"
    morphology: str | PathLike = "morphology.csv"
    tau: str | PathLike = "tau_sweep.csv"
    lesions: str | PathLike = "lesions.csv"
    curves: str | PathLike = "training_curves.csv"

    @classmethod
    def in_dir(cls, directory: str | PathLike = AGGREGATE_DIR) -> AggregatedFiles:
        names = cls()
        return replace(names, **{f.name: Path(directory) / getattr(names, f.name) for f in fields(cls)})

    @classmethod
    def from_mapping(cls, files: Mapping[str, str | PathLike]) -> AggregatedFiles:
        """From a mapping with (at least) these keys, such as a Snakemake rule's named inputs."""
        return cls(**{f.name: Path(files[f.name]) for f in fields(cls)})

    def as_dict(self) -> dict[str, str]:
        """{key: path as text}: a rule's named inputs or outputs."""
        return {f.name: str(getattr(self, f.name)) for f in fields(self)}


# summary.json keys its per-run sections by run and fold ("x0_lp1.5_sc0.5/fold0") and the utility stage's
# real-only arm by fold ("fold0"); headline/ files are named after the same keys.
def fold_key(fold: int | str) -> str:
    """'fold0': a fold's key in summary.json (utility.real) and its file name under headline/<run>/."""
    return f"fold{int(fold)}"


def parse_fold_key(key: str) -> int:
    """'fold0' -> 0: the inverse of fold_key."""
    if not key.startswith("fold") or not key[4:].isdigit():
        raise ValueError(f"{key!r} is not a fold key like 'fold0'")
    return int(key[4:])


def run_fold_key(run: str, fold: int | str) -> str:
    """'x0_lp1.5_sc0.5/fold0': a run and fold's key in summary.json (runs, memorization, utility.runs)."""
    return f"{run}/{fold_key(fold)}"


def parse_run_fold_key(key: str) -> tuple[str, int]:
    """'x0_lp1.5_sc0.5/fold0' -> ('x0_lp1.5_sc0.5', 0): the inverse of run_fold_key."""
    run, sep, fold = key.rpartition("/")
    if not sep or not run:
        raise ValueError(f"{key!r} is not a run and fold key like 'x0_lp1.5_sc0.5/fold0'")
    return run, parse_fold_key(fold)
