"""The rerun contract: which config values each Snakemake rule's outputs depend on, read from the schema.

Every key of config/schema.yaml names, in `x-rules`, the rules whose outputs it changes; a section's list
holds for every key below it unless the key gives its own. `x-rules: []` marks a runtime key (threads,
batch sizes, devices, channels_last, cluster requests): it changes how a result is computed or how fast, not
the result, so changing it reruns nothing. `x-structural: true` marks keys that change which jobs exist
(the grid, folds, replicas, the data source): a new fold or replica schedules only its own jobs and what
gathers them.

A rule's `params:` are exactly rule_settings(rule, ...) of the sections it reads, so Snakemake's params
trigger reruns exactly the jobs whose result a change can move. The job scripts take the runtime values
from the config.
"""

from __future__ import annotations

import functools
from typing import Any

from slimdiff.config import load_schema


@functools.cache
def _schema() -> dict[str, Any]:
    return load_schema()


def rule_settings(rule: str, section: str, values: dict[str, Any]) -> dict[str, Any]:
    """The part of config section `section` (its validated `values`) that `rule`'s outputs depend on."""
    node = _schema()["properties"][section]
    selected = _select(node, values, rule, node.get("x-rules"))
    return selected if isinstance(selected, dict) else {}


_SKIP = object()


def _select(node: dict, value: Any, rule: str, inherited: list[str] | None) -> Any:
    rules = node.get("x-rules", inherited)
    props = node.get("properties")
    if props is None or not isinstance(value, dict):
        return value if rules is not None and rule in rules else _SKIP
    out = {}
    for key, sub in props.items():
        if key in value:
            picked = _select(sub, value[key], rule, rules)
            if picked is not _SKIP:
                out[key] = picked
    return out if out else _SKIP


def key_rules() -> dict[str, dict[str, Any]]:
    """Every leaf key of the schema ("training.lr") -> {"rules": [...], "structural": bool}."""
    out: dict[str, dict[str, Any]] = {}

    def walk(node: dict, path: list[str], rules: list[str] | None, structural: bool) -> None:
        rules = node.get("x-rules", rules)
        structural = node.get("x-structural", structural)
        props = node.get("properties")
        if props is None:
            out[".".join(path)] = {"rules": list(rules or []), "structural": bool(structural)}
            return
        for key, sub in props.items():
            walk(sub, [*path, key], rules, structural)

    for section, node in _schema()["properties"].items():
        walk(node, [section], None, False)
    return out
