"""The run grid: config sections + `experiments` grids -> named run configs (x0_lp1.5_sc0.5, ...).

`experiments` is one grid or a list of grids. A grid is the product of its lists (prediction x p x
self-conditioning x variant x self-conditioning coin), optionally with its own folds and config overrides, so
the paper's design (Table 1, the self-conditioning ablation, the 3-fold coupling comparison) is a union of
small products rather than one big one. A run that two grids both ask for trains once, on the union of their
folds.

Run names: prediction_lp<p>_sc<probability>, then -<variant> for a non-shared coupling, then -sample when the
self-conditioning coin is drawn per sample (upstream draws one per batch, which gets no suffix), then
-pretrained for a model that is imported rather than trained (a grid with `pretrained`), then @<protocol> for
a grid that names one of the config's `protocols`, e.g. x0_lp1.5_sc0.5, x0_lp1.5_sc0.5-decoupled,
x0_lp1.5_sc0.5-decoupled-sample, x0_lp1.5_sc0.5-pretrained, x0_lp1.5_sc0.5@camera_ready.

Protocols: a run is what it is trained on and how, not only its cell. A protocol (config `protocols`) gives its
grids' runs their split (the cache's folds, or a view with other folds), training length and batch, replicas
and samples, and scoring regime (A: per replica; B: the merged pool). The protocol is part of the run's name,
so Table 1's x0_lp1.5_sc0.5@table1 (single split, 500 epochs) and the camera-ready x0_lp1.5_sc0.5@camera_ready
(3 folds, 1,000 epochs, batch 16 x 2 devices) are two trainings in two directories. Within one protocol a run
that two grids ask for still trains once, on the union of their folds.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any, NamedTuple

from slimdiff.config import ConfigError, load_schema, validate_config
from slimdiff.schema import check, validator_filling_defaults

RUN_SECTIONS = ("model", "diffusion", "sampler", "self_conditioning", "loss", "training")


def _num(x: float) -> str:
    s = f"{x:g}"
    return s if "." in s or "e" in s else s + ".0"


def run_name(
    prediction: str,
    p: float,
    sc: float,
    variant: str = "shared",
    coin: str = "batch",
    source: str = "trained",
    protocol: str = "",
) -> str:
    """x0_lp1.5_sc0.5, with -variant for a non-shared coupling, -sample for a per-sample coin, -pretrained
    for an imported model and @protocol for a run of a named protocol."""
    name = f"{prediction}_lp{_num(p)}_sc{_num(sc)}"
    if variant != "shared":
        name += f"-{variant}"
    if coin != "batch":
        name += f"-{coin}"
    if source != "trained":
        name += f"-{source}"
    if protocol:
        name += f"@{protocol}"
    return name


# The numbers may hold a "-" (1e-05), so the suffixes are matched by name rather than split off.
_RUN_NAME = re.compile(
    r"(?P<prediction>[a-z0-9]+)_lp(?P<p>[^_]+)_sc(?P<sc>\d+(?:\.\d*)?(?:e[+-]\d+)?)"
    r"(?:-(?P<variant>decoupled|zero_coupling|bottleneck_only))?(?:-(?P<coin>sample))?(?:-(?P<source>pretrained))?"
    r"(?:@(?P<protocol>[a-z][a-z0-9_]*))?"
)


def parse_run(run: str) -> dict:
    """x0_lp1.5_sc0.5[-variant][-sample][-pretrained][@protocol] -> prediction, p, sc, variant, coin, source and
    protocol ("" for the config's own sections): the inverse of run_name."""
    m = _RUN_NAME.fullmatch(run)
    if m is None:
        raise ConfigError(f"{run!r} is not a run name like x0_lp1.5_sc0.5[-decoupled][-sample][-pretrained][@protocol]")
    return {
        "prediction": m["prediction"],
        "p": float(m["p"]),
        "sc": float(m["sc"]),
        "variant": m["variant"] or "shared",
        "coin": m["coin"] or "batch",
        "source": m["source"] or "trained",
        "protocol": m["protocol"] or "",
    }


def comparison_family(run: str, fold: int) -> str:
    """The set of runs that are compared with each other: same fold, bottleneck variant and self-conditioning.

    Within a family only the prediction type and the Lp exponent vary, as in the paper's Table 1 (fold 0,
    shared, sc 0.5). Runs of different families differ in more than the factors a test compares (a fold is a
    different training set), so statistics and best/worst marks never pool across families. A per-sample
    self-conditioning coin is a different training too: it joins the variant part (fold0/shared, per-sample
    coin/sc0.5), so family names stay three "/"-separated parts and upstream's batch coin adds nothing. An
    imported (pretrained) model was trained elsewhere, on other data: it is its own family too. So is a run of
    another protocol (fold 0 of one split is not fold 0 of another): its protocol joins the fold part
    (fold0@table1/shared/sc0.5).
    """
    c = parse_run(run)
    setting = c["variant"] if c["coin"] == "batch" else f"{c['variant']}, per-sample coin"
    if c["source"] != "trained":
        setting += f", {c['source']}"
    return str(Family(int(fold), c["protocol"], setting, c["sc"]))


class Family(NamedTuple):
    """A comparison family's parts. Its name (str) is what summary.json and table.csv key families by;
    parse_family reads one back, so the table sorts and titles families without re-splitting the name."""

    fold: int
    protocol: str  # "" for the config's own sections
    setting: str  # the variant, then ", per-sample coin" and ", pretrained" where they apply
    sc: float

    @property
    def variant(self) -> str:
        return self.setting.split(",")[0]

    @property
    def sc_text(self) -> str:
        """The self-conditioning probability as run names write it (0.5, 1.0)."""
        return _num(self.sc)

    def __str__(self) -> str:
        where = f"fold{self.fold}@{self.protocol}" if self.protocol else f"fold{self.fold}"
        return f"{where}/{self.setting}/sc{self.sc_text}"


_FAMILY = re.compile(r"fold(?P<fold>\d+)(?:@(?P<protocol>[^/]+))?/(?P<setting>[^/]+)/sc(?P<sc>[^/]+)")


def parse_family(family: str) -> Family:
    """fold0@table1/shared, per-sample coin/sc0.5 -> Family: the inverse of comparison_family."""
    m = _FAMILY.fullmatch(family)
    if m is None:
        raise ValueError(f"{family!r} is not a comparison family like fold0/shared/sc0.5")
    return Family(int(m["fold"]), m["protocol"] or "", m["setting"], float(m["sc"]))


def _deep_merge(base: dict, update: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def experiment_grids(config: dict) -> list[dict[str, Any]]:
    """The config's grids as a list, each with the schema's defaults filled in."""
    grids = config.get("experiments", {})
    grids = grids if isinstance(grids, list) else [grids]
    defs = load_schema()["$defs"]
    validator = validator_filling_defaults({"$defs": defs, "$ref": "#/$defs/grid"})
    filled = []
    for i, grid in enumerate(grids):
        grid = copy.deepcopy(grid)
        at = ("experiments", i) if isinstance(config.get("experiments"), list) else ("experiments",)
        check(grid, validator, "config", ConfigError, at=at)  # the key paths validate_config names
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


DEFAULT_PROTOCOL = ""  # the runs of grids without `protocol`: the config's own sections, the cache's folds


def split_folds(split: dict | None) -> int | None:
    """How many folds a protocol's split has (None: the cache's own, known only once it is built)."""
    if split is None:
        return None
    return len(split["folds"]) if split["method"] == "subjects" else split["n_folds"]


def protocols(config: dict) -> dict[str, dict]:
    """Every protocol a grid may name, resolved: {name: {split, training, generation, scoring}}.

    The default protocol ("") is the config's own sections: the cache's folds, `generation` as it is and
    Regime A (per-replica) scoring. A named one takes what it sets and the rest from those sections, so a
    protocol that sets nothing behaves like the default (but its runs still get their own names).
    """
    out = {DEFAULT_PROTOCOL: {"split": None, "training": {}, "generation": dict(config["generation"])}}
    out[DEFAULT_PROTOCOL]["scoring"] = {"regime": "per_replica", "zbin_kid": None}
    for name, proto in config.get("protocols", {}).items():
        split = proto.get("split")
        if split is not None and split["method"] == "subjects" and not split.get("folds"):
            raise ConfigError(f"protocols.{name}.split: method subjects needs `folds` (validation subjects per fold)")
        if split is not None and split["method"] == "kfold" and split["n_folds"] < 2:
            raise ConfigError(
                f"protocols.{name}.split: method kfold needs n_folds >= 2 (one split: method stratified, n_folds 1)"
            )
        out[name] = {
            "split": copy.deepcopy(split),
            "training": copy.deepcopy(proto.get("training", {})),
            "generation": {**config["generation"], **proto.get("generation", {})},
            "scoring": {"regime": "per_replica", "zbin_kid": None, **proto.get("scoring", {})},
        }
    return out


def run_protocols(config: dict) -> dict[str, dict]:
    """Run name -> its resolved protocol (see `protocols`)."""
    resolved = protocols(config)
    return {run: resolved[parse_run(run)["protocol"]] for run in expand_runs(config)}


def expand_runs(config: dict) -> dict[str, dict]:
    """Every run of every grid, as a full run config; `training.folds` holds the folds the run trains on.

    A pretrained run's config describes the imported model as its grid claims it (the import checks the claim);
    its folds are the folds whose test split it is scored on. A grid's protocol sets its runs' training values
    first, then the grid's `overrides`; its folds default to every fold of the protocol's split.
    """
    runs: dict[str, dict] = {}
    resolved = protocols(config)
    for i, grid in enumerate(experiment_grids(config)):
        label = grid.get("name") or f"experiments[{i}]"
        protocol = grid.get("protocol") or DEFAULT_PROTOCOL
        if protocol not in resolved:
            known = ", ".join(sorted(p for p in resolved if p)) or "none"
            raise ConfigError(f"{label}: protocol {protocol!r} is not in the config's `protocols` (defined: {known})")
        proto = resolved[protocol]
        n_split = split_folds(proto["split"])
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
            cfg = _deep_merge(cfg, {"training": proto["training"]})
            cfg = _deep_merge(cfg, grid["overrides"])
            default_folds = list(range(n_split)) if n_split is not None else cfg["training"]["folds"]
            cfg["training"]["folds"] = list(grid["folds"] if grid["folds"] is not None else default_folds)
            if n_split is not None and max(cfg["training"]["folds"]) >= n_split:
                raise ConfigError(
                    f"{label}: folds {cfg['training']['folds']} but protocol {protocol!r} splits the pool into "
                    f"{n_split} fold(s) (0..{n_split - 1})"
                )
            label_name = run_name(prediction, p, sc, variant, coin or "batch", protocol=protocol)
            validate_config(cfg, source=f"{label} run {label_name} (after overrides)")
            sc_cfg = cfg["self_conditioning"]
            if not sc_cfg["enabled"]:
                sc_cfg["per_sample"] = False  # no coin is drawn: the two coins would be the same training
            coin_name = "sample" if sc_cfg["per_sample"] else "batch"
            name = run_name(prediction, p, sc, variant, coin_name, source, protocol)
            if name in runs:
                other = runs[name]
                folds = sorted(set(other["training"]["folds"]) | set(cfg["training"]["folds"]))
                other["training"]["folds"] = cfg["training"]["folds"] = folds
                if other != cfg:
                    raise ConfigError(
                        f"run {name} is asked for twice ({label} and an earlier grid) with different settings; "
                        "give one of them other values or drop the duplicate, or put the grids in different "
                        "`protocols` (a protocol's runs are other trainings, named <run>@<protocol>)"
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
            protocol = grid.get("protocol") or DEFAULT_PROTOCOL
            matches = [
                r
                for r in runs
                if (c := parse_run(r))["source"] == "pretrained"
                and (c["prediction"], c["p"], c["sc"], c["variant"], c["protocol"])
                == (prediction, p, sc, variant, protocol)
            ]
            for r in matches:
                if r in out and out[r] != grid["pretrained"]:
                    raise ConfigError(f"run {r} is given two pretrained models ({out[r]['file']}, ...); name one")
                out[r] = dict(grid["pretrained"])
    return out


def run_folds(runs: dict[str, dict]) -> list[tuple[str, int]]:
    """(run, fold) pairs in grid order: the unit of training, sampling and evaluation."""
    return [(name, fold) for name, cfg in runs.items() for fold in cfg["training"]["folds"]]
