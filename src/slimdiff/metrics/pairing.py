"""Which runs Regime B compares: a shared-bottleneck run and its twins with another variant, fold by fold.

Two runs are twins when everything their names encode (prediction type, Lp exponent, self-conditioning,
protocol) is the same but the bottleneck variant (x0_lp1.5_sc0.5 and x0_lp1.5_sc0.5-decoupled). A variant
without a shared twin of its own self-conditioning is compared with the one shared run of its prediction type,
Lp and protocol when there is exactly one: upstream trained its twin-U-Net variants (zero-coupling,
bottleneck-only) without self-conditioning and set them beside the shared sc 0.5 cell in the camera-ready table
(x0_lp1.5_sc0.0-zero_coupling@camera_ready against x0_lp1.5_sc0.5@camera_ready). A comparison needs at least
two folds on which both were trained. Kept free of numerical imports: the workflow calls it while it
parses the config, to know whether the paired figure is drawn.
"""

from __future__ import annotations

from collections.abc import Iterable

from slimdiff.experiments import parse_run

REFERENCE = "shared"
MIN_PAIRS = 2


def comparison_key(variant: str) -> str:
    """The key of a comparison in summary.json: decoupled -> decoupled_vs_shared."""
    return f"{variant}_vs_{REFERENCE}"


def variant_pairs(run_folds: Iterable[tuple[str, int]]) -> dict[str, dict[str, dict]]:
    """(run, fold) pairs -> {shared run: {variant: {run, paired_folds, unpaired_folds}}}.

    Every shared run that has a twin of another variant on any fold is listed, even with fewer than
    MIN_PAIRS common folds, so a missing pair is reported rather than dropped: `unpaired_folds` maps each
    fold only one of the two was trained on to the reason.
    """
    folds: dict[str, set[int]] = {}
    for run, fold in run_folds:
        folds.setdefault(run, set()).add(int(fold))
    cells: dict[tuple, dict[float, dict[str, str]]] = {}  # all but variant and sc -> {sc: {variant: run}}
    for run in folds:
        c = parse_run(run)
        key = tuple(sorted((k, v) for k, v in c.items() if k not in ("variant", "sc")))
        cells.setdefault(key, {}).setdefault(c["sc"], {})[c["variant"]] = run
    out: dict[str, dict[str, dict]] = {}
    for by_sc in cells.values():
        shared_runs = {sc: group[REFERENCE] for sc, group in by_sc.items() if REFERENCE in group}
        for sc, group in sorted(by_sc.items()):
            if sc in shared_runs:
                shared = shared_runs[sc]
            elif len(shared_runs) == 1:
                shared = next(iter(shared_runs.values()))
            else:
                continue
            for variant, run in sorted(group.items()):
                if variant == REFERENCE:
                    continue
                _pair(out, folds, shared, variant, run)
    return dict(sorted(out.items()))


def _pair(out: dict, folds: dict[str, set[int]], shared: str, variant: str, run: str) -> None:
    """out[shared][variant]: the other run and the folds both, or only one of them, were trained on."""
    a, b = folds[shared], folds[run]
    unpaired = {f: f"no {variant} run on this fold" for f in a - b}
    unpaired.update({f: f"no {REFERENCE} run on this fold" for f in b - a})
    out.setdefault(shared, {})[variant] = {
        "run": run,
        "paired_folds": sorted(a & b),
        "unpaired_folds": dict(sorted(unpaired.items())),
    }


def has_paired_folds(pairs: dict[str, dict[str, dict]]) -> bool:
    """Whether any comparison has at least MIN_PAIRS folds with both runs (then Regime B is computed)."""
    return any(len(p["paired_folds"]) >= MIN_PAIRS for variants in pairs.values() for p in variants.values())
