"""The run grid: config sections + `experiments` lists -> named run configs (x0_lp1.5_sc0.5, ...)."""

from __future__ import annotations

import copy
import itertools

RUN_SECTIONS = ("model", "diffusion", "sampler", "self_conditioning", "loss", "training")


def _num(x: float) -> str:
    s = f"{x:g}"
    return s if "." in s or "e" in s else s + ".0"


def run_name(prediction: str, p: float, sc: float, variant: str = "shared") -> str:
    name = f"{prediction}_lp{_num(p)}_sc{_num(sc)}"
    return name if variant == "shared" else f"{name}-{variant}"


def expand_runs(config: dict) -> dict[str, dict]:
    """Every combination of the experiment lists, as a full run config (a deep copy of the base sections)."""
    grid = config["experiments"]
    runs = {}
    for variant, prediction, p, sc in itertools.product(
        grid["variant"], grid["prediction"], grid["p"], grid["self_conditioning"]
    ):
        cfg = {k: copy.deepcopy(config[k]) for k in RUN_SECTIONS}
        cfg["model"]["variant"] = variant
        cfg["diffusion"]["prediction"] = prediction
        cfg["loss"]["p"] = p
        cfg["self_conditioning"]["probability"] = sc
        cfg["self_conditioning"]["enabled"] = sc > 0
        runs[run_name(prediction, p, sc, variant)] = cfg
    return runs
