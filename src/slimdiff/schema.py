"""JSON Schema checks shared by everything a user writes by hand: the pipeline config, its experiment grids, and
generation specs.

One validator (Draft 2020-12 that also fills in each key's `default`) and one error format, so a mistake reads
the same wherever it is made: one line per problem, naming the file (or setting) and the key path,

    config/config.yaml: training.lr: -1 is less than the minimum of 0
    spec.json: samples.1: unknown keys ['lesions'] (comments must start with '_')

List items are numbered in the path (`experiments.0.prediction.0`). Each caller raises its own error class
(ConfigError, SpecError) with `report`, so the commands print it as any other input error.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

KeyPath = Sequence[str | int]
Problem = tuple[KeyPath, str]  # where, what is wrong


def validator_filling_defaults(schema: dict[str, Any], *, integers_only: bool = False) -> Validator:
    """A Draft 2020-12 validator that also writes each property's `default` into the instance it validates.

    Defaults are filled before the property itself is validated, so nested objects with `default: {}` receive
    their own defaults in turn (the same behaviour as snakemake.utils.validate, which cannot fill defaults inside
    a list such as the experiment grids). `integers_only`: 1.0 is not an integer (JSON Schema accepts it), for
    values that count things.
    """
    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema_)

    type_checker = base.TYPE_CHECKER
    if integers_only:
        type_checker = type_checker.redefine("integer", lambda _, value: type(value) is int)
    return jsonschema.validators.extend(base, {"properties": set_defaults}, type_checker=type_checker)(schema)


def innermost(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For "not valid under any of the given schemas" (anyOf, oneOf), the sub-error that says what is actually
    wrong: jsonschema's own message names no key and no reason."""
    while error.validator in ("anyOf", "oneOf") and error.context:
        # Skip the branches that fail only because the value has another type (a list given to the object form).
        deeper = [e for e in error.context if not (e.validator == "type" and not e.relative_path)]
        error = jsonschema.exceptions.best_match(deeper or error.context)
    return error


def key_path(path: Iterable[str | int]) -> str:
    """`data.cache.z_bins`, `experiments.0.prediction.0`: the key path as the error lines write it."""
    return ".".join(map(str, path))


def explain(error: jsonschema.ValidationError) -> list[Problem]:
    """What jsonschema says, at the key path of the innermost error: the default for `problems`."""
    inner = innermost(error)
    return [(inner.absolute_path, inner.message)]


def problems(
    validator: Validator,
    instance: Any,
    *,
    at: KeyPath = (),
    explain: Callable[[jsonschema.ValidationError], list[Problem]] = explain,
) -> list[str]:
    """Every problem of `instance` as "key.path: message" (the message alone at the top level), in key order and
    each once. `at` is where `instance` sits in a larger document (a grid is `experiments.0` of its config);
    `explain` may word a kind of error for its readers (generation specs say what a value must be)."""
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(k) for k in e.absolute_path])
    lines = []
    for error in errors:
        for path, message in explain(error):
            where = key_path([*at, *path])
            lines.append(f"{where}: {message}" if where else message)
    return list(dict.fromkeys(lines))


def report(source: str, problem_lines: Iterable[str]) -> str:
    """The error message: one line per problem, each headed by `source` (a file, or the setting it came from)."""
    return "\n".join(f"{source}: {line}" for line in problem_lines)


def check(
    instance: Any,
    validator: Validator,
    source: str,
    error: type[Exception],
    *,
    at: KeyPath = (),
    explain: Callable[[jsonschema.ValidationError], list[Problem]] = explain,
) -> None:
    """Validate `instance` (filling in defaults, with `validator_filling_defaults`); raise `error` with the
    `report` of every problem (`at` and `explain` as in `problems`)."""
    found = problems(validator, instance, at=at, explain=explain)
    if found:
        raise error(report(source, found))
