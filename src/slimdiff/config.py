"""One validated config for the whole pipeline.

Snakemake validates `config/config.yaml` against `config/schema.yaml` in `rules/common.smk`; the CLIs use
the same schema through this module, so a command run by hand sees exactly the defaults a rule sees.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from slimdiff.errors import SlimdiffInputError


class ConfigError(SlimdiffInputError, ValueError):
    """A config file or setting that cannot be used: it does not match config/schema.yaml, or its values do
    not fit together or with the data. Also a ValueError (a bad setting is a bad value; callers catch it so)."""


def load_schema() -> dict[str, Any]:
    text = resources.files("slimdiff").joinpath("schema.yaml").read_text()
    return yaml.safe_load(text)


def _validator_filling_defaults(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    """A Draft 2020-12 validator that also writes each property's `default` into the instance.

    Defaults are filled before the property itself is validated, so nested objects with `default: {}`
    receive their own defaults in turn (the same behaviour as snakemake.utils.validate).
    """
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def _innermost(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For "not valid under any of the given schemas", the sub-error that says what is actually wrong."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        # Skip the branches that fail only because the value has another type (a list given to the object form).
        deeper = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        error = jsonschema.exceptions.best_match(deeper or error.context)
    return error


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Return a deep copy of `config` with defaults filled in; raise ConfigError naming every problem."""
    filled = copy.deepcopy(config) if config is not None else {}
    validator = _validator_filling_defaults(load_schema())
    errors = sorted(validator.iter_errors(filled), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        lines = [f"  - {'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in map(_innermost, errors)]
        raise ConfigError(f"{source} does not match config/schema.yaml:\n" + "\n".join(lines))
    return filled


def load_config(path: str | Path | None) -> dict[str, Any]:
    """Load and validate a YAML config; `None` gives the schema defaults (the paper values)."""
    if path is None:
        return validate_config({}, source="<defaults>")
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return validate_config(raw or {}, source=str(path))
