"""The rerun contract key by key: each config value reaches exactly the params of the rules that read it."""

import copy
import re

from conftest import REPO
from rerun_contract import NOT_DRY_RUN, _get, _node, _set, new_value

from slimdiff.config import load_schema, validate_config
from slimdiff.experiments import GRID_KEYS, RUN_SECTIONS, expand_runs
from slimdiff.rerun import key_rules, rule_settings

RULE = re.compile(r"^\s*rule (\w+):", re.M)
WORKFLOW_RULES = {m.group(1) for path in (REPO / "rules").glob("*.smk") for m in RULE.finditer(path.read_text())}
BASE = validate_config(
    {
        "model": {"channels": [8, 16], "attention_levels": [False, True]},
        "experiments": {"prediction": ["x0"], "p": [1.5], "self_conditioning": [0.5]},
    }
)


def test_every_key_names_rules_of_the_workflow():
    keys = key_rules()
    assert len(keys) > 100
    for key, info in keys.items():
        assert set(info["rules"]) <= WORKFLOW_RULES, f"{key}: {info['rules']} are not all rules of the workflow"
    runtime = {k for k, v in keys.items() if not v["rules"] and not v["structural"]}
    assert {"training.threads", "training.num_workers", "training.compile", "training.channels_last"} <= runtime
    assert {"generation.threads", "generation.batch_size", "generation.job_unit", "metrics.threads"} <= runtime
    assert {k for k, v in keys.items() if v["structural"]} >= {"training.folds", "generation.replicas"}


def test_each_key_changes_exactly_its_rules_settings():
    """Change one key at a time: the settings (params) of its rules change, no other rule's do."""
    schema = load_schema()
    sections = [s for s in schema["properties"] if s != "experiments"]
    before = {(rule, s): rule_settings(rule, s, BASE[s]) for rule in WORKFLOW_RULES for s in sections}
    for key, info in key_rules().items():
        if key in NOT_DRY_RUN:
            continue
        changed = copy.deepcopy(BASE)
        _set(changed, key, new_value(key, _get(BASE, key), _node(schema, key)))
        section = key.split(".")[0]
        after = {rule: rule_settings(rule, section, changed[section]) for rule in WORKFLOW_RULES}
        moved = {rule for rule in WORKFLOW_RULES if after[rule] != before[rule, section]}
        assert moved == set(info["rules"]), f"{key}: reaches {sorted(moved)}, schema says {info['rules']}"


def test_grid_keys_never_reach_a_run():
    runs = expand_runs(BASE)
    schema = load_schema()
    for key in GRID_KEYS:
        changed = copy.deepcopy(BASE)
        _set(changed, key, new_value(key, _get(BASE, key), _node(schema, key)))
        assert expand_runs(changed) == runs, key


def test_train_params_leave_out_runtime_keys_the_sampler_and_folds():
    run = expand_runs(BASE)["x0_lp1.5_sc0.5"]
    params = {s: rule_settings("train", s, run[s]) for s in RUN_SECTIONS}
    assert params["sampler"] == {} and "folds" not in params["training"]
    assert not {"threads", "num_workers", "compile", "channels_last"} & set(params["training"])
    assert params["training"]["lr"] == run["training"]["lr"] and params["loss"] == run["loss"]
