"""How config files combine: the config a user names is the config that runs, through every entry point.

`snakemake --configfile X` runs X alone (config/config.yaml is read only when no file is named); an overlay says
what it builds on with `extends:`. Checked key by key on the config the Snakefile itself resolves
(SLIMDIFF_SHOW_CONFIG), for plain Snakemake, the SLURM profile and `dvc repro`'s plain `snakemake` commands.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from warm_snakemake import WARM

from slimdiff.config import ConfigError, load_config, merge_config, resolve_config, validate_config

BIN = Path(sys.executable).parent
SHIPPED = sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "schema.yaml")


def flat(cfg, prefix=""):
    """{"a.b.c": value} for every leaf (lists are leaves), to compare configs key by key."""
    if isinstance(cfg, dict):
        return {k: v for key, sub in cfg.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: cfg}


def differences(got: dict, want: dict) -> list[str]:
    a, b = flat(got), flat(want)
    missing = "<missing>"
    keys = sorted(k for k in a.keys() | b.keys() if a.get(k, missing) != b.get(k, missing))
    return [f"{k}: {a.get(k, missing)!r} != intended {b.get(k, missing)!r}" for k in keys]


def deep_overlay(base: dict, overlay: dict) -> dict:
    out = dict(base)
    for key, value in overlay.items():
        both = isinstance(value, dict) and isinstance(base.get(key), dict)
        out[key] = deep_overlay(base[key], value) if both else value
    return out


def intended(name: str) -> dict:
    """What each shipped config means, written out by hand: the paper and the default stand alone, the CPU
    ablation is the default with its grid replaced, the pilot is the paper with counts changed."""
    read = {n: yaml.safe_load((REPO / "config" / n).read_text()) for n in SHIPPED}
    if name == "ablation-cpu.yaml":
        overlay = {k: v for k, v in read[name].items() if k != "extends"}
        return validate_config({**read["config.yaml"], **overlay})
    if name == "pilot.yaml":  # the paper's config with counts changed: nested keys overlaid, lists replaced
        overlay = {k: v for k, v in read[name].items() if k != "extends"}
        return validate_config(deep_overlay(read["paper.yaml"], overlay))
    if name == "pilot-ci.yaml":  # the pilot with fewer runs: its experiments list replaces the pilot's
        pilot = deep_overlay(read["paper.yaml"], {k: v for k, v in read["pilot.yaml"].items() if k != "extends"})
        return validate_config(deep_overlay(pilot, {k: v for k, v in read[name].items() if k != "extends"}))
    assert "extends" not in read[name], f"{name} is a new overlay: say here what it is meant to resolve to"
    return validate_config(read[name])


# ---- the resolution rule itself ----


def test_every_shipped_config_says_how_configs_combine():
    for name in SHIPPED:
        text = (REPO / "config" / name).read_text()
        head = text[: text.index("\n\n")] if "\n\n" in text else text
        assert "configfile" in head or "extends" in head, f"config/{name}: its header must say how it combines"


@pytest.mark.parametrize("name", SHIPPED)
def test_load_config_gives_the_intended_config(name):
    assert differences(load_config(REPO / "config" / name), intended(name)) == []


def test_extends_is_relative_to_the_file_and_chains(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "root.yaml").write_text("training: {lr: 1.0, folds: [0, 1]}\nsampler: {steps: 7}\n")
    (tmp_path / "base" / "mid.yaml").write_text("extends: root.yaml\ntraining: {lr: 2.0}\n")
    (tmp_path / "top.yaml").write_text("extends: base/mid.yaml\ntraining: {folds: [2]}\n")
    cfg = resolve_config([tmp_path / "top.yaml"])
    assert cfg == {"training": {"lr": 2.0, "folds": [2]}, "sampler": {"steps": 7}}  # lists replaced, not merged


def test_files_merge_in_order_then_overrides(tmp_path):
    (tmp_path / "a.yaml").write_text("training: {lr: 1.0, seed: 3}\n")
    (tmp_path / "b.yaml").write_text("training: {lr: 2.0}\n")
    cfg = resolve_config([tmp_path / "a.yaml", tmp_path / "b.yaml"], overrides={"training": {"seed": 9}})
    assert cfg == {"training": {"lr": 2.0, "seed": 9}}
    assert merge_config({"a": {"b": 1}}, {"a": 5}) == {"a": 5}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "extends: b.yaml\n", "b.yaml": "extends: a.yaml\n"}, "goes round in a circle"),
        ({"a.yaml": "extends: nowhere.yaml\n"}, "extends 'nowhere.yaml', but"),
        ({"a.yaml": "extends: [b.yaml]\n"}, "must be the path of one config file"),
        ({"a.yaml": "- just\n- a list\n"}, "a config must be a mapping"),
    ],
)
def test_bad_extends_names_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_config(tmp_path / "a.yaml")
    assert str(tmp_path / "a.yaml") in str(err.value)


# ---- what Snakemake resolves, through each entry point ----
# Each resolution is a dry run of the workflow (seconds; the paper's grid the longest): the tests below share one
# project and one worker (xdist group), and a command line resolved once is not resolved again.
RESOLVE = pytest.mark.xdist_group("resolve_project")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The workflow with the shipped configs, and the (empty) raw directory paper.yaml points at."""
    proj = tmp_path_factory.mktemp("resolve") / "proj"
    proj.mkdir()
    shutil.copy(REPO / "Snakefile", proj)
    for name in ("rules", "workflow", "profiles", "report", "envs", "config"):
        shutil.copytree(REPO / name, proj / name, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "slurm").symlink_to("profiles/slurm")
    (proj / "data" / "ds004199").mkdir(parents=True)
    (proj / "raw").mkdir()  # pilot.yaml's (slimdiff-pilot prepare writes the cohort there)
    return proj


_resolved: dict[tuple, dict] = {}


def resolved_by_snakemake(proj: Path, *args: str) -> dict:
    """The config the Snakefile resolves for this command line (a dry run of one cheap target), once per
    project and command line."""
    if (proj, args) not in _resolved:
        _resolved[proj, args] = _resolve(proj, *args)
    return _resolved[proj, args]


def _resolve(proj: Path, *args: str) -> dict:
    out = proj / f"resolved-{os.getpid()}-{len(list(proj.glob('resolved-*')))}.yaml"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SLIMDIFF_SHOW_CONFIG": str(out)}
    argv = ["results/cache/cache_meta.json", "-n", "--quiet", *args]
    proc = WARM.run(argv, proj, env)  # `snakemake *argv`, without its import each time
    assert proc.returncode == 0, " ".join(argv) + "\n" + proc.stdout[-2000:] + proc.stderr[-2000:]
    return yaml.safe_load(out.read_text())


@RESOLVE
@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.slow
def test_configfile_runs_the_named_config(project, name):
    got = resolved_by_snakemake(project, "--configfile", f"config/{name}")
    assert differences(got, intended(name)) == []


@RESOLVE
@pytest.mark.slow
def test_no_configfile_runs_config_yaml(project):
    assert differences(resolved_by_snakemake(project), intended("config.yaml")) == []


@RESOLVE
@pytest.mark.slow
def test_paper_by_configfile_equals_paper_copied_over_the_default(project, tmp_path):
    by_flag = resolved_by_snakemake(project, "--configfile", "config/paper.yaml")
    copied = tmp_path / "copied"
    shutil.copytree(project, copied, symlinks=True)
    shutil.copy(project / "config" / "paper.yaml", copied / "config" / "config.yaml")
    assert differences(resolved_by_snakemake(copied), by_flag) == []
    # the SLURM profile (and the default workflow profile it loads beside) changes nothing in the config
    by_profile = resolved_by_snakemake(project, "--profile", "slurm", "--configfile", "config/paper.yaml")
    assert differences(by_profile, by_flag) == []


def test_dvc_stages_run_the_config_snakemake_runs():
    """`dvc repro` runs plain `snakemake` commands (after the stale-lock check): config/config.yaml, as
    `snakemake` alone resolves it (the DVC test in test_workflow.py checks the resolved file of a real `dvc
    repro`)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        cmd = stage["cmd"].strip().removeprefix("python -m slimdiff.workflow_lock && ")
        assert cmd.startswith("snakemake"), name
        assert "--configfile" not in stage["cmd"] and "--config " not in stage["cmd"], name


@RESOLVE
@pytest.mark.slow
def test_command_line_overrides_come_last(project):
    # (Snakemake reads nested --config values as strings: a string-valued key shows the merge)
    got = resolved_by_snakemake(project, "--configfile", "config/ablation-cpu.yaml", "--config", "data={raw_dir: x}")
    want = intended("ablation-cpu.yaml")
    want["data"]["raw_dir"] = "x"
    assert differences(got, want) == []


@RESOLVE
@pytest.mark.slow
def test_slimdiff_config_prints_what_snakemake_resolves(project):
    proc = subprocess.run(
        [str(BIN / "slimdiff-config"), "config/ablation-cpu.yaml"], capture_output=True, text=True, cwd=project
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# Resolved config: config/ablation-cpu.yaml")
    assert differences(yaml.safe_load(proc.stdout), intended("ablation-cpu.yaml")) == []
    bad = subprocess.run([str(BIN / "slimdiff-config"), "nope.yaml"], capture_output=True, text=True, cwd=project)
    assert bad.returncode == 2 and "nope.yaml: config file not found" in bad.stderr
