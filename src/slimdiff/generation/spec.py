"""Generation specs (JSON), in the upstream's two formats, checked before anything is sampled.

Common keys: checkpoint_path (a model.pt), output_dir, seed (42), device ("auto"), replica (0),
batch_size (32), dtype ("float16", the storage dtype), optional config_path (a run config.yaml or pipeline
config; checked against the model), format ("detailed" | "compact"; inferred when absent). Keys starting
with "_" are comments.

* detailed: "samples": [{"zbin": 3, "control": 10, "lesion": 5}, ...]   (order kept)
* compact:  "defaults": {"control": 2, "lesion": 2, "zbins": "all" | "0-9" | "1,4,7" | [1, 4] | 3},
            "overrides": [{"zbin": 4, "lesion": 10}, ...]               (sorted by z-bin)

SPEC_SCHEMA (JSON Schema, validated like the pipeline config by slimdiff.schema, defaults filled in) checks
the shape of a spec and names the key path of every problem; what depends on the model (z-bins in range) and
the z-bin lists are checked after it, their errors in the same `spec.json: key.path: message` form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

from slimdiff import schema
from slimdiff.errors import SlimdiffInputError
from slimdiff.generation.sampling import Condition
from slimdiff.model.file import ModelFileError, read_model_file

# A schema node's `description` completes "<key> must be ...": the message for a value of the wrong kind.
_COMMENTS = {"^_": {}}  # keys starting with "_" are comments, allowed in every object
_COUNT = {"type": "integer", "minimum": 0, "description": "a non-negative integer"}
_ZBIN = {"type": "integer", "description": "an integer z-bin"}
_PATH_TEXT = "a path, absolute or relative to the spec file"
SPEC_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "description": "a JSON object",
    "properties": {
        "checkpoint_path": {"type": "string", "description": _PATH_TEXT},
        "config_path": {"type": ["string", "null"], "description": _PATH_TEXT},
        "output_dir": {"type": "string", "description": _PATH_TEXT},
        "seed": {**_COUNT, "default": 42},
        "device": {"type": "string", "default": "auto", "description": "a device name: auto, cpu, cuda or cuda:N"},
        "replica": {**_COUNT, "default": 0},
        "batch_size": {**_COUNT, "default": 32},
        "dtype": {"enum": ["float16", "float32"], "default": "float16", "description": "float16 or float32"},
        "format": {
            "enum": ["detailed", "compact", None],
            "description": "'detailed' (a 'samples' list) or 'compact' ('defaults' + 'overrides')",
        },
        "samples": {
            "type": "array",
            "description": "a list of {'zbin', 'control', 'lesion'} objects",
            "items": {
                "type": "object",
                "description": "an object with a 'zbin' and 'control' and/or 'lesion' counts",
                "properties": {"zbin": _ZBIN, "control": {**_COUNT, "default": 0}, "lesion": {**_COUNT, "default": 0}},
                "required": ["zbin"],
                "patternProperties": _COMMENTS,
                "additionalProperties": False,
            },
        },
        "defaults": {
            "type": "object",
            "description": "an object with 'control' and 'lesion' counts and 'zbins'",
            "properties": {
                "control": {**_COUNT, "default": 0},
                "lesion": {**_COUNT, "default": 0},
                "zbins": {
                    "anyOf": [
                        {"type": "string"},
                        {"type": "integer"},
                        {"type": "array", "items": {"type": "integer"}},
                    ],
                    "default": "all",
                    "description": "'all', 'a-b', 'a,b,c', a list of integers or an integer",
                },
            },
            "patternProperties": _COMMENTS,
            "additionalProperties": False,
        },
        "overrides": {
            "type": "array",
            "default": [],
            "description": "a list of {'zbin', 'control', 'lesion'} objects",
            "items": {
                "type": "object",
                "description": "an object with a 'zbin' and 'control' and/or 'lesion' counts",
                # no count defaults here: a count left out is the one in `defaults`
                "properties": {"zbin": _ZBIN, "control": _COUNT, "lesion": _COUNT},
                "required": ["zbin"],
                "patternProperties": _COMMENTS,
                "additionalProperties": False,
            },
        },
    },
    "required": ["checkpoint_path", "output_dir"],
    "patternProperties": _COMMENTS,
    "additionalProperties": False,
}


class SpecError(SlimdiffInputError):
    """A generation spec that cannot be run; the message names the spec file."""


@dataclass
class GenerationPlan:
    model_path: Path
    output_dir: Path
    seed: int
    device: str
    replica: int
    batch_size: int
    dtype: str  # storage dtype of the written images and masks
    conditions: list[Condition]
    payload: dict

    @property
    def total(self) -> int:
        return sum(c.n for c in self.conditions)


def parse_spec(spec_path: str | Path) -> GenerationPlan:
    """Read, validate and resolve a spec against its model; every problem is a SpecError naming the spec."""
    spec_path = Path(spec_path)
    spec = validate_spec(_read_json(spec_path), spec_path)
    base = spec_path.parent
    model_path = (base / spec["checkpoint_path"]).resolve()
    payload = _read_model(model_path, spec_path)
    if spec.get("config_path"):
        _check_config(base / spec["config_path"], payload, spec_path)
    entries = _entries(spec, payload["data_info"]["z_bins"], spec_path)
    return GenerationPlan(
        model_path=model_path,
        output_dir=(base / spec["output_dir"]).resolve(),
        seed=spec["seed"],
        device=spec["device"],
        replica=spec["replica"],
        batch_size=max(1, spec["batch_size"]),
        dtype=spec["dtype"],
        conditions=_conditions_from_entries(entries),
        payload=payload,
    )


def validate_spec(spec, spec_path: Path) -> dict:
    """The spec with SPEC_SCHEMA's defaults filled in; a SpecError lists every problem with its key path, one line
    each (`spec.json: samples.1: unknown keys ['lesions'] ...`, slimdiff.schema's format)."""
    validator = schema.validator_filling_defaults(SPEC_SCHEMA, integers_only=True)  # 1.0 is not a count
    schema.check(spec, validator, str(spec_path), SpecError, explain=_explain)
    return spec


def _explain(error: jsonschema.ValidationError) -> list[schema.Problem]:
    """Unknown and missing keys by name, a wrong value by what it must be (the node's `description`)."""
    where = error.absolute_path
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        patterns = error.schema.get("patternProperties", {})
        unknown = sorted(k for k in error.instance if k not in known and not any(re.search(p, k) for p in patterns))
        return [(where, f"unknown keys {unknown} (comments must start with '_')")]
    if error.validator == "required":
        return [(where, f"missing required key {k!r}") for k in error.validator_value if k not in error.instance]
    if "description" in error.schema:
        return [(where, f"must be {error.schema['description']}, got {error.instance!r}")]
    return schema.explain(error)


def _read_json(spec_path: Path):
    try:
        return json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{spec_path}: spec file not found") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{spec_path}: not valid JSON ({exc})") from None


def _read_model(model_path: Path, spec_path: Path) -> dict:
    try:
        return read_model_file(model_path)
    except ModelFileError as exc:
        raise SpecError(f"{spec_path}: checkpoint_path: {exc}") from None


def _spec_format(spec: dict) -> str | None:
    """The spec's format, as given or inferred from its keys (None when neither)."""
    return spec.get("format") or ("detailed" if "samples" in spec else "compact" if "defaults" in spec else None)


def _entries(spec: dict, n_bins: int, spec_path: Path) -> list[tuple[int, int, int]]:
    """(z-bin, control count, lesion count) per z-bin, from either format."""
    fmt = _spec_format(spec)
    if fmt == "detailed":
        if "samples" not in spec:
            raise SpecError(f"{spec_path}: detailed format needs a 'samples' list")
        return _detailed_entries(spec["samples"], n_bins, spec_path)
    if fmt == "compact":
        if "defaults" not in spec:
            raise SpecError(f"{spec_path}: compact format needs a 'defaults' object")
        return _compact_entries(spec["defaults"], spec["overrides"], n_bins, spec_path)
    raise SpecError(
        f"{spec_path}: unknown format {spec.get('format')!r}: use 'detailed' (a 'samples' list) or "
        "'compact' ('defaults' + 'overrides')"
    )


def _detailed_entries(samples: list[dict], n_bins: int, spec_path: Path) -> list[tuple[int, int, int]]:
    """The samples list in its order; each z-bin at most once."""
    entries, seen = [], set()
    for i, item in enumerate(samples):
        z = _zbin(item["zbin"], n_bins, f"samples.{i}.zbin", spec_path)
        if z in seen:
            raise SpecError(f"{spec_path}: samples.{i}.zbin: duplicate z-bin {z} in samples")
        seen.add(z)
        entries.append((z, item["control"], item["lesion"]))
    return entries


def _compact_entries(defaults: dict, overrides: list[dict], n_bins: int, spec_path: Path) -> list[tuple[int, int, int]]:
    """The defaults on their z-bins, each override replacing (or adding) one z-bin; sorted by z-bin."""
    dc, dl = defaults["control"], defaults["lesion"]
    table = {z: (dc, dl) for z in _parse_zbins(defaults["zbins"], n_bins, spec_path)}
    seen = set()
    for i, item in enumerate(overrides):
        z = _zbin(item["zbin"], n_bins, f"overrides.{i}.zbin", spec_path)
        if z in seen:
            raise SpecError(f"{spec_path}: overrides.{i}.zbin: duplicate z-bin {z} in overrides")
        seen.add(z)
        table[z] = (item.get("control", dc), item.get("lesion", dl))
    return [(z, *table[z]) for z in sorted(table)]


def _zbin(value: int, n_bins: int, where: str, spec: Path) -> int:
    if not 0 <= value < n_bins:
        raise SpecError(f"{spec}: {where}: z-bin {value} is out of range: the model has z-bins 0-{n_bins - 1}")
    return value


def _parse_zbins(value, n_bins: int, spec: Path) -> list[int]:
    """defaults.zbins (a string, an integer or a list of integers; see SPEC_SCHEMA) -> distinct z-bins."""
    if value == "all":
        return list(range(n_bins))
    if isinstance(value, int):
        return [_zbin(value, n_bins, "defaults.zbins", spec)]
    if isinstance(value, list):
        numbers = value
    elif "-" in value:
        try:
            lo, hi = (int(v) for v in value.split("-"))
        except ValueError:
            raise SpecError(f"{spec}: defaults.zbins: range {value!r} is not 'a-b'") from None
        if lo > hi:
            raise SpecError(f"{spec}: defaults.zbins: range {value!r} is empty")
        numbers = range(lo, hi + 1)
    else:
        try:
            numbers = [int(v) for v in value.split(",")]
        except ValueError:
            raise SpecError(
                f"{spec}: defaults.zbins: {value!r} is not 'all', 'a-b', 'a,b,c', a list or an integer"
            ) from None
    bins = [_zbin(v, n_bins, "defaults.zbins", spec) for v in numbers]
    dupes = sorted({b for b in bins if bins.count(b) > 1})
    if dupes:
        raise SpecError(f"{spec}: defaults.zbins: duplicate z-bins {dupes}")
    return bins


def _conditions_from_entries(entries: list[tuple[int, int, int]]) -> list[Condition]:
    out = []
    for z, control, lesion in entries:
        out += [Condition(z, 0, control), Condition(z, 1, lesion)]
    return [c for c in out if c.n > 0]


def _check_config(config_path: Path, payload: dict, spec_path: Path) -> None:
    """A config given next to the model must describe the same network and diffusion."""
    try:
        cfg = yaml.safe_load(config_path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{spec_path}: config_path {config_path} not found") from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{spec_path}: config_path {config_path} is not valid YAML: {exc}") from None
    if not isinstance(cfg, dict):
        raise SpecError(f"{spec_path}: config_path {config_path} is not a YAML mapping")
    stored = payload["run_cfg"]
    problems = []
    for section in ("model", "diffusion", "self_conditioning"):
        for key, value in (cfg.get(section) or {}).items():
            if key in stored.get(section, {}) and stored[section][key] != value:
                problems.append(f"{section}.{key}: config {value!r} vs model {stored[section][key]!r}")
    z_bins = (cfg.get("data") or {}).get("cache", {}).get("z_bins")
    if z_bins is not None and z_bins != payload["data_info"]["z_bins"]:
        problems.append(f"data.cache.z_bins: config {z_bins} vs model {payload['data_info']['z_bins']}")
    if problems:
        raise SpecError(f"{spec_path}: config_path {config_path} does not match the model: " + "; ".join(problems))
