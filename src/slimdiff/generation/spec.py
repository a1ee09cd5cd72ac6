"""Generation specs (JSON), in the upstream's two formats, checked before anything is sampled.

Common keys: checkpoint_path (a model.pt), output_dir, seed (42), device ("auto"), replica (0),
batch_size (32), dtype ("float16"), optional config_path (a run config.yaml or pipeline config; checked
against the model), format ("detailed" | "compact"; inferred when absent). Keys starting with "_" are comments.

* detailed: "samples": [{"zbin": 3, "control": 10, "lesion": 5}, ...]   (order kept)
* compact:  "defaults": {"control": 2, "lesion": 2, "zbins": "all" | "0-9" | "1,4,7" | [1, 4] | 3},
            "overrides": [{"zbin": 4, "lesion": 10}, ...]               (sorted by z-bin)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from slimdiff.errors import SlimdiffInputError
from slimdiff.generation.sampling import Condition
from slimdiff.model.file import ModelFileError, read_model_file

KNOWN_KEYS = {
    "checkpoint_path",
    "config_path",
    "output_dir",
    "seed",
    "device",
    "format",
    "samples",
    "defaults",
    "overrides",
    "replica",
    "batch_size",
    "dtype",
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
    dtype: str
    conditions: list[Condition]
    payload: dict

    @property
    def total(self) -> int:
        return sum(c.n for c in self.conditions)


def _count(value, where: str, spec: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(f"{spec}: {where} must be a non-negative integer, got {value!r}")
    return value


def _zbin(value, n_bins: int, where: str, spec: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{spec}: {where} z-bin must be an integer, got {value!r}")
    if not 0 <= value < n_bins:
        raise SpecError(f"{spec}: {where} z-bin {value} is out of range: the model has z-bins 0-{n_bins - 1}")
    return value


def _parse_zbins(value, n_bins: int, spec: Path) -> list[int]:
    if value == "all":
        return list(range(n_bins))
    if isinstance(value, int) and not isinstance(value, bool):
        return [_zbin(value, n_bins, "defaults.zbins", spec)]
    if isinstance(value, list):
        bins = [_zbin(v, n_bins, "defaults.zbins", spec) for v in value]
    elif isinstance(value, str) and "-" in value:
        try:
            lo, hi = (int(v) for v in value.split("-"))
        except ValueError:
            raise SpecError(f"{spec}: defaults.zbins range {value!r} is not 'a-b'") from None
        if lo > hi:
            raise SpecError(f"{spec}: defaults.zbins range {value!r} is empty")
        bins = [_zbin(v, n_bins, "defaults.zbins", spec) for v in range(lo, hi + 1)]
    elif isinstance(value, str):
        try:
            numbers = [int(v) for v in value.split(",")]
        except ValueError:
            raise SpecError(
                f"{spec}: defaults.zbins {value!r} is not 'all', 'a-b', 'a,b,c', a list or an integer"
            ) from None
        bins = [_zbin(v, n_bins, "defaults.zbins", spec) for v in numbers]
    else:
        raise SpecError(f"{spec}: defaults.zbins {value!r} is not 'all', 'a-b', 'a,b,c', a list or an integer")
    dupes = sorted({b for b in bins if bins.count(b) > 1})
    if dupes:
        raise SpecError(f"{spec}: duplicate z-bins in defaults.zbins: {dupes}")
    return bins


def _conditions_from_entries(entries: list[tuple[int, int, int]]) -> list[Condition]:
    out = []
    for z, control, lesion in entries:
        out += [Condition(z, 0, control), Condition(z, 1, lesion)]
    return [c for c in out if c.n > 0]


def parse_spec(spec_path: str | Path) -> GenerationPlan:
    spec_path = Path(spec_path)
    try:
        spec = json.loads(spec_path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{spec_path}: spec file not found") from None
    except json.JSONDecodeError as exc:
        raise SpecError(f"{spec_path}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise SpecError(f"{spec_path}: the spec must be a JSON object")
    unknown = sorted(k for k in spec if k not in KNOWN_KEYS and not k.startswith("_"))
    if unknown:
        raise SpecError(f"{spec_path}: unknown keys {unknown} (comments must start with '_')")
    for key in ("checkpoint_path", "output_dir"):
        if key not in spec:
            raise SpecError(f"{spec_path}: missing required key {key!r}")

    base = spec_path.parent
    model_path = (base / spec["checkpoint_path"]).resolve()
    try:
        payload = read_model_file(model_path)
    except ModelFileError as exc:
        raise SpecError(f"{spec_path}: checkpoint_path: {exc}") from None
    n_bins = payload["data_info"]["z_bins"]
    if spec.get("config_path"):
        _check_config(base / spec["config_path"], payload, spec_path)

    fmt = spec.get("format") or ("detailed" if "samples" in spec else "compact" if "defaults" in spec else None)
    if fmt == "detailed":
        if not isinstance(spec.get("samples"), list):
            raise SpecError(f"{spec_path}: detailed format needs a 'samples' list")
        entries, seen = [], set()
        for i, item in enumerate(spec["samples"]):
            if not isinstance(item, dict) or "zbin" not in item:
                raise SpecError(f"{spec_path}: samples[{i}] must be an object with a 'zbin'")
            z = _zbin(item["zbin"], n_bins, f"samples[{i}]", spec_path)
            if z in seen:
                raise SpecError(f"{spec_path}: duplicate z-bin {z} in samples (samples[{i}])")
            seen.add(z)
            entries.append(
                (
                    z,
                    _count(item.get("control", 0), f"samples[{i}].control", spec_path),
                    _count(item.get("lesion", 0), f"samples[{i}].lesion", spec_path),
                )
            )
    elif fmt == "compact":
        defaults = spec.get("defaults")
        if not isinstance(defaults, dict):
            raise SpecError(f"{spec_path}: compact format needs a 'defaults' object")
        dc = _count(defaults.get("control", 0), "defaults.control", spec_path)
        dl = _count(defaults.get("lesion", 0), "defaults.lesion", spec_path)
        table = {z: (dc, dl) for z in _parse_zbins(defaults.get("zbins", "all"), n_bins, spec_path)}
        seen = set()
        for i, item in enumerate(spec.get("overrides", [])):
            if not isinstance(item, dict) or "zbin" not in item:
                raise SpecError(f"{spec_path}: overrides[{i}] must be an object with a 'zbin'")
            z = _zbin(item["zbin"], n_bins, f"overrides[{i}]", spec_path)
            if z in seen:
                raise SpecError(f"{spec_path}: duplicate z-bin {z} in overrides (overrides[{i}])")
            seen.add(z)
            table[z] = (
                _count(item.get("control", dc), f"overrides[{i}].control", spec_path),
                _count(item.get("lesion", dl), f"overrides[{i}].lesion", spec_path),
            )
        entries = [(z, *table[z]) for z in sorted(table)]
    else:
        raise SpecError(
            f"{spec_path}: unknown format {spec.get('format')!r}: use 'detailed' (a 'samples' list) or "
            "'compact' ('defaults' + 'overrides')"
        )

    dtype = spec.get("dtype", "float16")
    if dtype not in ("float16", "float32"):
        raise SpecError(f"{spec_path}: dtype must be float16 or float32, got {dtype!r}")
    return GenerationPlan(
        model_path=model_path,
        output_dir=(base / spec["output_dir"]).resolve(),
        seed=_count(spec.get("seed", 42), "seed", spec_path),
        device=str(spec.get("device", "auto")),
        replica=_count(spec.get("replica", 0), "replica", spec_path),
        batch_size=max(1, _count(spec.get("batch_size", 32), "batch_size", spec_path)),
        dtype=dtype,
        conditions=_conditions_from_entries(entries),
        payload=payload,
    )


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
