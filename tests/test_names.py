"""One definition of each shared name: keys built and parsed by one pair of helpers, and the lists that cannot
import slimdiff.names (profiles, docs, dvc.yaml) checked against the rules and the library."""

import re
from pathlib import Path

import pytest
import yaml

from slimdiff.experiments import comparison_family, parse_family, run_name
from slimdiff.names import (
    AGGREGATE_DIR,
    AggregatedFiles,
    fold_key,
    parse_fold_key,
    parse_run_fold_key,
    run_fold_key,
)
from slimdiff.pilot import gpu_sections

REPO = Path(__file__).resolve().parents[1]
RUNS = [
    run_name("x0", 1.5, 0.5),
    run_name("epsilon", 2.0, 0.0, "zero_coupling"),
    run_name("v", 1e-05, 1.0, "decoupled", "sample", "pretrained", "camera_ready"),
]


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("fold", [0, 12])
def test_summary_keys_and_families_parse_back(run, fold):
    assert parse_run_fold_key(run_fold_key(run, fold)) == (run, fold)
    assert parse_fold_key(fold_key(fold)) == fold
    family = comparison_family(run, fold)
    assert str(parse_family(family)) == family and parse_family(family).fold == fold


@pytest.mark.parametrize("key", ["x0_lp1.5_sc0.5", "x0_lp1.5_sc0.5/0", "/fold0", "x0/foldx"])
def test_a_malformed_key_is_refused(key):
    with pytest.raises(ValueError):
        parse_run_fold_key(key)


def _rule_names() -> set[str]:
    return {m for smk in (REPO / "rules").glob("*.smk") for m in re.findall(r"^\s*rule (\w+):", smk.read_text(), re.M)}


def test_the_gpu_rules_named_in_the_profiles_and_docs_are_the_rules_that_ask_for_a_gpu():
    gpu = set(gpu_sections(REPO / "rules"))
    assert {"train", "generate", "metrics_image", "baseline", "utility", "utility_real", "preprocess"} <= gpu
    slurm = (REPO / "profiles" / "slurm" / "config.v8+.yaml").read_text()
    suggested = set(re.findall(r"^#\s+(\w+): \{slurm_partition: gpu\}$", slurm, re.M))
    assert suggested == gpu, "profiles/slurm's suggested set-resources"
    docs = (REPO / "docs" / "how-to" / "gpus.md").read_text()
    paragraph = docs[docs.index("The GPU-tagged rules") : docs.index("Every other rule")]
    assert set(re.findall(r"`(\w+)`", paragraph)) & _rule_names() == gpu, "docs/how-to/gpus.md"
    default = (REPO / "profiles" / "default" / "config.v8+.yaml").read_text()
    named = set(re.findall(r"\b\w+\b", " ".join(line for line in default.splitlines() if "GPU-tagged" in line)))
    assert not named & _rule_names(), "profiles/default names GPU rules: point it at docs/how-to/gpus.md instead"


def test_the_figures_stage_of_dvc_depends_on_exactly_the_aggregated_files():
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["figures"]
    metrics = {d for d in stage["deps"] if isinstance(d, str) and d.startswith(f"{AGGREGATE_DIR}/")}
    assert metrics == set(AggregatedFiles.in_dir().as_dict().values())


def test_aggregated_files_from_a_rules_named_inputs():
    paths = AggregatedFiles.in_dir("elsewhere")
    assert AggregatedFiles.from_mapping({**paths.as_dict(), "extra": "x"}) == paths
    assert paths.curves == Path("elsewhere/training_curves.csv")
