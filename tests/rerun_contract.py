"""The rerun contract checked on a finished pipeline: change config keys, ask `snakemake -n` what would run.

For every key of config/schema.yaml the schema's `x-rules` says which rules' outputs depend on it
(slimdiff.rerun). Changing the key must schedule exactly those rules for "params changed", and everything
else only because an input was updated by a scheduled job. Keys with the same rules are changed together,
one dry run per set of rules (a few seconds each rather than one per key); the unit tests in test_rerun.py
show for each key on its own that it reaches exactly its rules' params.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict

import yaml

from slimdiff.config import load_schema, validate_config
from slimdiff.experiments import GRID_KEYS
from slimdiff.rerun import key_rules

# Keys that change which jobs exist rather than a rule's params: test_workflow's check_rerun_contract changes
# each of them on its own (source and raw_dir together) and checks that only the new jobs are scheduled.
# `protocols` is a map of named protocols whose values reach the rules through the runs (tests/test_paper_protocol.py).
# `data.synthetic.as_acquired` cannot change alone: heads with skull need a brain-extraction backend, which adds the
# preprocess stage's jobs (tests/test_preprocess*.py run that path; test_rerun.py shows the key reaches synth_cohort).
# `utility.enabled` adds or removes the utility stage's jobs (tests/test_utility.py::test_the_utility_switch).
NOT_DRY_RUN = {
    "data.source",
    "data.raw_dir",
    "experiments",
    "protocols",
    "data.synthetic.as_acquired",
    "utility.enabled",
}
# Changed values for keys where the schema alone does not give a valid different one.
NEW_VALUES = {
    "data.synthetic.voxel_mm": [3.0, 4.0],
    "data.synthetic.lesion_volume_ml": [1.0, 9.0],
    "data.cache.spacing": [5.0, 5.0, 5.0],
    "data.cache.roi_size": [36, 36, 36],
    "data.cache.percentiles": [1.0, 99.0],
    "data.cache.z_range": [4, 20],
    "data.splits.test_subjects": ["sub-00001"],
    "data.splits.test_from": {"column": "split", "test": ["test"], "train": ["train"]},
    "data.cohort.max_slice_spacing_mm": 1.5,
    "data.cohort.acquisition": ["3D"],
    "data.cohort.participants": [{"column": "group", "keep": ["fcd"]}],
    "data.ingest.brain_mask_suffix": "_mask",
    "preprocess.brain_extraction.synthstrip.weights": "/nonexistent/synthstrip.1.pt",
    "preprocess.brain_extraction.synthstrip.sha256": "ab" * 32,
    "model.channels": [8, 24],
    "model.attention_levels": [False, False],
    "model.twin.channels": [12, 24],
    "model.bottleneck_only.channels": [12, 24],
    "loss.mask_p": 2.0,
    "loss.uncertainty_log_var_init": [0.1, 0.2],
    "training.val_max_slices": 7,
    "training.steps_per_epoch": 2,
    "training.folds": [0, 1],
    "training.mask_dice_timesteps": [50],
    "utility.seeds": [0, 2],
    "figures.report_pages": ["report.md"],
    "utility.channels": [4, 6],
    "utility.strides": [1],
    "generation.classes": [1],
    "generation.dtype": "float32",
    "metrics.weights_dir": "/nonexistent/weights",
    "metrics.baseline_fold": 1,
    "gpu.devices": ["0"],
    "gpu.lock_dir": "/tmp/slimdiff-locks",
    "cluster.train": {"runtime": 30, "mem_mb": 2500, "cpus_per_gpu": 1},
    "cluster.generate": {"runtime": 11, "mem_mb": 1100, "cpus_per_gpu": 1},
    "cluster.metrics": {"runtime": 21, "mem_mb": 3100, "cpus_per_gpu": 1},
    "cluster.preprocess": {"runtime": 31, "mem_mb": 3200, "cpus_per_gpu": 1},
    "preprocess.brain_extraction.mask_suffix": "_brainmask",
    "preprocess.n4.iterations": [20, 20],
    "preprocess.qc.brain_volume_ml": [500.0, 2500.0],
}


# Rules of a stage that a config may switch off (the preprocessing stage is skipped when every step is off, as in
# the tiny pipeline): a group of keys for them is changed together with a switch that turns the stage on, so
# their jobs appear in the dry run (as new jobs) rather than never being scheduled.
STAGE_SWITCHES = {"preprocess": {"preprocess.kde.enabled": True}, "preprocess_cohort": {"preprocess.kde.enabled": True}}


# Why a job may run besides its own params: a scheduled job updates its input, or the change made new files
# (more z-bins: more sample files).
LEGITIMATE = ("Params have changed", "Input files updated by another job", "Missing output files")


def _node(schema: dict, key: str) -> dict:
    node = schema
    for part in key.split("."):
        node = node["properties"][part]
    return node


def new_value(key: str, value, node: dict):
    """A valid value of `key` other than `value`."""
    if key in NEW_VALUES:
        return NEW_VALUES[key]
    if "enum" in node:
        return next(v for v in node["enum"] if v != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        top = node.get("maximum")
        return value - 1 if top is not None and value + 1 > top else value + 1
    if isinstance(value, float):
        top = node.get("maximum")
        return value / 2 if top is not None and value * 1.5 > top else (value * 1.5 if value else 0.25)
    raise AssertionError(f"{key}: add a changed value to NEW_VALUES (value {value!r})")


def _set(config: dict, key: str, value) -> None:
    *parents, last = key.split(".")
    for part in parents:
        config = config[part]
    config[last] = value


def _get(config: dict, key: str):
    for part in key.split("."):
        config = config[part]
    return config


def groups(base: dict) -> dict[tuple[str, ...], list[str]]:
    """Keys to change in one dry run, by the rules they must rerun (grid-set keys rerun nothing)."""
    out = defaultdict(list)
    for key, info in key_rules().items():
        if key in NOT_DRY_RUN or info["structural"]:
            continue
        rules = () if key in GRID_KEYS else tuple(sorted(info["rules"]))
        out[rules].append(key)
    return out


def scheduled(dry_run_output: str) -> dict[str, set[str]]:
    """rule -> the reasons `snakemake -n` gives for its jobs."""
    out: dict[str, set[str]] = defaultdict(set)
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        reason = re.search(r"reason: ([^\n]+)", block)
        if m and reason:
            out[m.group(1)].add(reason.group(1))
    return out


def check(config_path, dry_run) -> list[str]:
    """Change each group of keys in the config at `config_path`, dry-run, restore; return the mismatches."""
    schema = load_schema()
    original = config_path.read_text()
    base = validate_config(yaml.safe_load(original))
    problems = []
    for rules, keys in groups(base).items():
        changed = copy.deepcopy(base)
        for key in keys:
            _set(changed, key, new_value(key, _get(base, key), _node(schema, key)))
        for rule in rules:
            for key, value in STAGE_SWITCHES.get(rule, {}).items():
                if key not in keys:
                    _set(changed, key, value)
        changed = validate_config(changed, source=f"changed {keys}")
        config_path.write_text(yaml.safe_dump(changed))
        try:
            jobs = scheduled(dry_run())
        finally:
            config_path.write_text(original)
        by_params = {rule for rule, reasons in jobs.items() if any("Params have changed" in r for r in reasons)}
        other = {
            rule: reasons
            for rule, reasons in jobs.items()
            if not all(any(ok in r for ok in LEGITIMATE) for r in reasons)
        }
        # Its rules run (for their params, or because a rule before them reran); no other rule's params moved;
        # a runtime key schedules nothing at all.
        if not by_params <= set(rules) or not set(rules) <= set(jobs) or other or (not rules and jobs):
            expected = sorted(rules)
            problems.append(f"{keys}: scheduled {sorted(jobs)}, by params {sorted(by_params)}; expected {expected}")
    return problems


def jobs(dry_run_output: str) -> dict[str, list[dict[str, str]]]:
    """rule -> the wildcards of each of its scheduled jobs."""
    out: dict[str, list[dict[str, str]]] = defaultdict(list)
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", dry_run_output):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m:
            continue
        found = re.search(r"wildcards: ([^\n]+)", block)
        pairs = [item.split("=", 1) for item in found.group(1).split(", ")] if found else []
        out[m.group(1)].append(dict(pairs))
    return out
