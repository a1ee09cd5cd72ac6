"""The run grid: config sections + `experiments` grids -> named run configs (x0_lp1.5_sc0.5, ...).

`experiments` is one grid or a list of grids. A grid is the product of its lists (prediction x p x
self-conditioning x variant x self-conditioning coin), optionally with its own folds and config overrides, so
the paper's design (Table 1, the self-conditioning ablation, the 3-fold coupling comparison) is a union of
small products rather than one big one. A run that two grids both ask for trains once, on the union of their
folds.

Run names: prediction_lp<p>_sc<probability>, then -<variant> for a non-shared coupling, then -sample when the
self-conditioning coin is drawn per sample (upstream draws one per batch, which gets no suffix), then
-pretrained for a model that is imported rather than trained (a grid with `pretrained`), e.g.
x0_lp1.5_sc0.5, x0_lp1.5_sc0.5-decoupled, x0_lp1.5_sc0.5-decoupled-sample, x0_lp1.5_sc0.5-pretrained.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

from slimdiff.config import ConfigError, _validator_filling_defaults, load_schema, validate_config

RUN_SECTIONS = ("model", "diffusion", "sampler", "self_conditioning", "loss", "training")


def _num(x: float) -> str:
    s = f"{x:g}"
    return s if "." in s or "e" in s else s + ".0"


def run_name(
    prediction: str, p: float, sc: float, variant: str = "shared", coin: str = "batch", source: str = "trained"
) -> str:
    """x0_lp1.5_sc0.5, with -variant for a non-shared coupling, -sample for a per-sample coin and -pretrained
    for an imported model."""
    name = f"{prediction}_lp{_num(p)}_sc{_num(sc)}"
    if variant != "shared":
        name += f"-{variant}"
    if coin != "batch":
        name += f"-{coin}"
    if source != "trained":
        name += f"-{source}"
    return name


# The numbers may hold a "-" (1e-05), so the suffixes are matched by name rather than split off.
_RUN_NAME = re.compile(
    r"(?P<prediction>[a-z0-9]+)_lp(?P<p>[^_]+)_sc(?P<sc>\d+(?:\.\d*)?(?:e[+-]\d+)?)"
    r"(?:-(?P<variant>decoupled|zero_coupling|bottleneck_only))?(?:-(?P<coin>sample))?(?:-(?P<source>pretrained))?"
)


def parse_run(run: str) -> dict:
    """x0_lp1.5_sc0.5[-variant][-sample][-pretrained] -> prediction, p, sc, variant, coin, source (the inverse
    of run_name)."""
    m = _RUN_NAME.fullmatch(run)
    if m is None:
        raise ConfigError(f"{run!r} is not a run name like x0_lp1.5_sc0.5[-decoupled][-sample][-pretrained]")
    return {
        "prediction": m["prediction"],
        "p": float(m["p"]),
        "sc": float(m["sc"]),
        "variant": m["variant"] or "shared",
        "coin": m["coin"] or "batch",
        "source": m["source"] or "trained",
    }


def comparison_family(run: str, fold: int) -> str:
    """The set of runs that are compared with each other: same fold, bottleneck variant and self-conditioning.

    Within a family only the prediction type and the Lp exponent vary, as in the paper's Table 1 (fold 0,
    shared, sc 0.5). Runs of different families differ in more than the factors a test compares (a fold is a
    different training set), so statistics and best/worst marks never pool across families. A per-sample
    self-conditioning coin is a different training too: it joins the variant part (fold0/shared, per-sample
    coin/sc0.5), so family names stay three "/"-separated parts and upstream's batch coin adds nothing. An
    imported (pretrained) model was trained elsewhere, on other data: it is its own family too.
    """
    c = parse_run(run)
    setting = c["variant"] if c["coin"] == "batch" else f"{c['variant']}, per-sample coin"
    if c["source"] != "trained":
        setting += f", {c['source']}"
    return f"fold{fold}/{setting}/sc{_num(c['sc'])}"


def _deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def experiment_grids(config: dict) -> list[dict[str, Any]]:
    """The config's grids as a list, each with the schema's defaults filled in."""
    grids = config.get("experiments", {})
    grids = grids if isinstance(grids, list) else [grids]
    schema = load_schema()
    validator = _validator_filling_defaults({"$defs": schema["$defs"], "$ref": "#/$defs/grid"})
    filled = []
    for i, grid in enumerate(grids):
        grid = copy.deepcopy(grid)
        errors = [f"experiments[{i}]: {e.message}" for e in validator.iter_errors(grid)]
        if errors:
            raise ConfigError("\n".join(errors))
        filled.append(grid)
    return filled


# Config keys that every grid sets for its runs (from its prediction, p, self_conditioning and variant lists):
# the sections' own values of these never reach a run.
GRID_KEYS = (
    "model.variant",
    "diffusion.prediction",
    "loss.p",
    "self_conditioning.probability",
    "self_conditioning.enabled",
)


def expand_runs(config: dict) -> dict[str, dict]:
    """Every run of every grid, as a full run config; `training.folds` holds the folds the run trains on.

    A pretrained run's config describes the imported model as its grid claims it (the import checks the claim);
    its folds are the folds whose test split it is scored on.
    """
    runs: dict[str, dict] = {}
    for i, grid in enumerate(experiment_grids(config)):
        label = grid.get("name") or f"experiments[{i}]"
        source = "pretrained" if grid["pretrained"] else "trained"
        if grid["pretrained"]:
            _check_single_model_grid(grid, label)
        coins = grid["self_conditioning_coin"] or [None]  # None: self_conditioning.per_sample as configured
        for variant, prediction, p, sc, coin in itertools.product(
            grid["variant"], grid["prediction"], grid["p"], grid["self_conditioning"], coins
        ):
            cfg = {k: copy.deepcopy(config[k]) for k in RUN_SECTIONS}
            cfg["model"]["variant"] = variant
            cfg["diffusion"]["prediction"] = prediction
            cfg["loss"]["p"] = p
            cfg["self_conditioning"]["probability"] = sc
            cfg["self_conditioning"]["enabled"] = sc > 0
            if coin is not None:
                cfg["self_conditioning"]["per_sample"] = coin == "sample"
            cfg = _deep_merge(cfg, grid["overrides"])
            cfg["training"]["folds"] = list(grid["folds"] if grid["folds"] is not None else cfg["training"]["folds"])
            label_name = run_name(prediction, p, sc, variant, coin or "batch")
            validate_config(cfg, source=f"{label} run {label_name} (after overrides)")
            sc_cfg = cfg["self_conditioning"]
            if not sc_cfg["enabled"]:
                sc_cfg["per_sample"] = False  # no coin is drawn: the two coins would be the same training
            name = run_name(prediction, p, sc, variant, "sample" if sc_cfg["per_sample"] else "batch", source)
            if name in runs:
                other = runs[name]
                folds = sorted(set(other["training"]["folds"]) | set(cfg["training"]["folds"]))
                other["training"]["folds"] = cfg["training"]["folds"] = folds
                if other != cfg:
                    raise ConfigError(
                        f"run {name} is asked for twice ({label} and an earlier grid) with different settings; "
                        "give one of them other values or drop the duplicate"
                    )
            runs[name] = cfg
    return runs


def _check_single_model_grid(grid: dict, label: str) -> None:
    """A pretrained grid names one model: each of its lists holds the one value that describes that model."""
    for key in ("prediction", "p", "self_conditioning", "variant"):
        if len(grid[key]) != 1:
            raise ConfigError(
                f"{label}: a grid with `pretrained` describes one model, so `{key}` takes one value, not {grid[key]}"
            )
    if grid["self_conditioning_coin"] and len(grid["self_conditioning_coin"]) != 1:
        raise ConfigError(f"{label}: a grid with `pretrained` takes one self_conditioning_coin")


def pretrained_runs(config: dict) -> dict[str, dict]:
    """Run name -> the grid's `pretrained` block (file, config, priors, weights), for the imported runs."""
    runs = expand_runs(config)
    out = {}
    for grid in experiment_grids(config):
        if grid["pretrained"]:
            prediction, p, sc, variant = (grid[k][0] for k in ("prediction", "p", "self_conditioning", "variant"))
            matches = [
                r
                for r in runs
                if (c := parse_run(r))["source"] == "pretrained"
                and (c["prediction"], c["p"], c["sc"], c["variant"]) == (prediction, p, sc, variant)
            ]
            for r in matches:
                if r in out and out[r] != grid["pretrained"]:
                    raise ConfigError(f"run {r} is given two pretrained models ({out[r]['file']}, ...); name one")
                out[r] = dict(grid["pretrained"])
    return out


def run_folds(runs: dict[str, dict]) -> list[tuple[str, int]]:
    """(run, fold) pairs in grid order: the unit of training, sampling and evaluation."""
    return [(name, fold) for name, cfg in runs.items() for fold in cfg["training"]["folds"]]
