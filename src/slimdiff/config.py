"""One validated config for the whole pipeline, resolved the same way by Snakemake and by the CLIs.

How config files combine (the rule `rules/common.smk` applies, and the one every shipped config states):

* The config that runs is the one the command names. `snakemake --configfile config/paper.yaml` runs
  paper.yaml alone, exactly as `cp config/paper.yaml config/config.yaml && snakemake` does; config/config.yaml
  is read only when no config file is named. Keys a file leaves out take config/schema.yaml's defaults.
* A file that is an overlay says what it builds on: `extends: config.yaml` (a path relative to the file).
  The base is read first (itself maybe extending another), the overlay's keys are merged over it. Several
  files named on the command line merge in order, and `--config KEY=VALUE` comes last.
* Merging is Snakemake's: mappings merge key by key, anything else (lists included) is replaced whole.
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from slimdiff import schema
from slimdiff.errors import SlimdiffInputError


class ConfigError(SlimdiffInputError, ValueError):
    """A config file or setting that cannot be used: it does not match config/schema.yaml, or its values do
    not fit together or with the data. Also a ValueError (a bad setting is a bad value; callers catch it so)."""


def load_schema() -> dict[str, Any]:
    """config/schema.yaml (shipped in the package), parsed: every config key, its type, default and description.

    A copy of one parse per process: parsing the schema takes ~0.3 s, and a Snakefile validates a config per
    run of the grid (the paper grid parsed it 54 times, most of a dry run's time).
    """
    return copy.deepcopy(_parsed_schema())


@functools.cache
def _parsed_schema() -> dict[str, Any]:
    text = resources.files("slimdiff").joinpath("schema.yaml").read_text()
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # libyaml's parser when built


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Return a deep copy of `config` with defaults filled in; raise ConfigError naming every problem, one line
    each as `source: key.path: message` (slimdiff.schema)."""
    filled = copy.deepcopy(config) if config is not None else {}
    schema.check(filled, schema.validator_filling_defaults(load_schema()), source, ConfigError)
    return filled


EXTENDS = "extends"  # the key by which an overlay names the config it builds on


def merge_config(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """`overlay` over `base`, as Snakemake merges config files: mappings key by key, other values replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return merged


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(raw).__name__}")
    return raw


def read_config_file(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """One config file with the chain of files it `extends` merged in below it (not validated)."""
    path = Path(path)
    if path.resolve() in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, path.resolve()))
        raise ConfigError(f"{path}: `{EXTENDS}` goes round in a circle: {chain}")
    raw = _read_yaml(path)
    parent = raw.pop(EXTENDS, None)
    if parent is None:
        return raw
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"{path}: `{EXTENDS}` must be the path of one config file, got {parent!r}")
    base_path = path.parent / parent
    if not base_path.is_file():
        raise ConfigError(f"{path}: extends {parent!r}, but {base_path} is not a file")
    return merge_config(read_config_file(base_path, (*_seen, path.resolve())), raw)


def resolve_config(files: Sequence[str | Path], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The config that runs (not yet validated): the named files, each with what it extends, merged in order,
    then `overrides` (Snakemake's `--config KEY=VALUE`)."""
    merged: dict[str, Any] = {}
    for path in files:
        merged = merge_config(merged, read_config_file(path))
    return merge_config(merged, overrides or {})


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Load and validate a YAML config (following `extends`); `None` gives the schema defaults (paper values)."""
    if path is None:
        return validate_config({}, source="<defaults>")
    return validate_config(read_config_file(path), source=str(path))


def config_yaml(config: Mapping[str, Any], source: str) -> str:
    """The resolved config as YAML, headed by the files it came from: what a run will use, key by key."""
    header = f"# Resolved config: {source}, with config/schema.yaml's defaults filled in.\n"
    return header + yaml.safe_dump(dict(config), sort_keys=False)


def show_config(config: Mapping[str, Any], where: str, source: str) -> None:
    """Print the resolved config (`where` is "-") or write it to the file `where`."""
    from slimdiff.io import write_text

    text = config_yaml(config, source)
    if where == "-":
        print(text, end="", flush=True)
    else:
        write_text(where, text)


SHOW_CONFIG_ENV = "SLIMDIFF_SHOW_CONFIG"


def show_config_if_asked(config: Mapping[str, Any], source: str) -> None:
    """What the Snakefile calls once it has resolved the config: `SLIMDIFF_SHOW_CONFIG=- snakemake -n ...` prints
    it before anything runs, a path instead of `-` writes it there (an optional switch, hence no `envvars:`)."""
    where = os.environ.get(SHOW_CONFIG_ENV)
    if where:
        show_config(config, where, source)
