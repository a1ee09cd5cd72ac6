"""The headline numbers of every run and fold, made for `dvc metrics show/diff` and `dvc exp show`.

summary.json is the complete record (statistics, memorisation quantiles, null reasons, versions); DVC prints
every nested key of a metrics file as a column, so it is no metrics file. Here each run and fold gets one flat
JSON of at most MAX_COLUMNS numbers (null where undefined, never a string), in its own file
``<out_dir>/<run>/fold<K>.json``: `dvc metrics show` prints one row per file, so the table grows by a row per
run and fold and keeps a few columns. The real-vs-real baseline is ``<out_dir>/baseline.json``.
"""

from __future__ import annotations

import math
from pathlib import Path

from slimdiff.io import atomic_dir, write_json
from slimdiff.names import fold_key, parse_run_fold_key

# Column -> where in a summary.json `runs` entry: the mean over replicas of the image and mask metrics.
RUN_COLUMNS = {
    "kid": "kid",
    "kid_std": "kid",  # the spread over replicas
    "lpips": "lpips",
    "mmd_mf": "mmd_mf",
    "fid": "fid",
    "lesion_rate_cls1": "lesion_rate_cls1",
    "lesion_rate_cls0": "lesion_rate_cls0",
    "n_lesions": "n_lesions",
}
# Downstream segmenter (summary.json `utility`): Dice on lesion slices, mean over seeds, per training arm.
UTILITY_COLUMNS = {"dice_real": "real", "dice_real_syn": "real+syn", "dice_syn": "syn"}
UTILITY_METRIC = "dice_lesion_slices"
COLUMNS = (*RUN_COLUMNS, *UTILITY_COLUMNS)
MAX_COLUMNS = 12
BASELINE = "baseline"


def _number(value) -> float | None:
    """A finite float, or None (JSON null) for anything undefined or not a number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _stat(entry, key: str = "mean") -> float | None:
    return _number(entry.get(key)) if isinstance(entry, dict) else _number(entry)


def _utility_dice(arm) -> float | None:
    if not isinstance(arm, dict):
        return None
    return _stat((arm.get("summary") or {}).get(UTILITY_METRIC))


def headline(summary: dict) -> dict[str, dict[str, float | None]]:
    """{"<run>/fold<K>": {column: number or None}} for every run and fold, plus "baseline", from summary.json."""
    utility = summary.get("utility") or {}
    util_runs, util_real = utility.get("runs") or {}, utility.get("real") or {}
    out: dict[str, dict[str, float | None]] = {}
    for key, metrics in (summary.get("runs") or {}).items():
        row = {
            col: _stat(metrics.get(name), "std" if col.endswith("_std") else "mean")
            for col, name in RUN_COLUMNS.items()
        }
        _, fold = parse_run_fold_key(key)
        arms = {**(util_runs.get(key) or {}), "real": util_real.get(fold_key(fold))}  # the real-only arm is per fold
        row.update({col: _utility_dice(arms.get(arm)) for col, arm in UTILITY_COLUMNS.items()})
        out[key] = row
    base = summary.get("baseline") or {}
    base_std = summary.get("baseline_std") or {}
    out[BASELINE] = {
        **{col: _number((base_std if col.endswith("_std") else base).get(name)) for col, name in RUN_COLUMNS.items()},
        **dict.fromkeys(UTILITY_COLUMNS),
    }
    return out


def write_headline(summary: dict, out_dir: str | Path) -> dict[str, dict[str, float | None]]:
    """Write headline(summary) as one JSON per entry under out_dir, replacing the whole directory at once.

    The files are written into a temporary sibling directory swapped into place (slimdiff.io.atomic_dir): a
    killed job leaves the old directory, never a mix.
    """
    rows = headline(summary)
    with atomic_dir(out_dir) as tmp:
        for key, row in rows.items():
            write_json(tmp / f"{key}.json", row)
    return rows
