"""The paper grid's DAG, from one dry run of config/paper.yaml over a 4-subject raw tree (7,900 jobs, the
longest dry run of the suite, so it is made once here): both protocols' jobs against the spec's numbers (issue
#33), and the pilot's DAGs against its rules (issue #27)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml
from test_paper_protocol import CAMERA_READY, TABLE1_TRAININGS, Z_BINS
from test_pilot import PAPER, PILOT, PILOT_CI, _fake_cohort

from slimdiff import pilot
from slimdiff.experiments import expand_runs, pretrained_runs, run_folds


class PaperDag(NamedTuple):
    raw: Path  # the raw tree it was planned over
    text: str  # what `snakemake -n --forceall` printed


@pytest.fixture(scope="module")
def paper_dag(tmp_path_factory) -> PaperDag:
    tmp = tmp_path_factory.mktemp("paper_dag")
    raw = _fake_cohort(tmp / "raw")
    return PaperDag(raw, pilot.paper_dag_text(PAPER, raw, tmp / "paper"))


def dry_run_jobs(text: str) -> dict[str, list[dict]]:
    """rule -> [{input, wildcards}] of each job in a (non-quiet) dry run."""
    jobs = defaultdict(list)
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m:
            continue
        inputs = re.search(r"input: ([^\n]+)", block)
        found = re.search(r"wildcards: ([^\n]+)", block)
        wildcards = dict(item.split("=", 1) for item in found.group(1).split(", ")) if found else {}
        jobs[m.group(1)].append({"input": inputs.group(1) if inputs else "", "wildcards": wildcards})
    return jobs


@pytest.mark.slow
def test_dry_run_shows_both_grids_with_their_protocols(paper_dag):
    """One command plans both grids from one cache: splits, trainings, replicas and scoring jobs per protocol."""
    counts = pilot.parse_job_stats(paper_dag.text)
    jobs = dry_run_jobs(paper_dag.text)
    trainings = TABLE1_TRAININGS + 3 * len(CAMERA_READY)
    assert counts["train"] == trainings == 33
    assert counts["preprocess"] == 4, "one preprocessing job per subject"
    assert counts["build_cache"] == 1 and counts["split_view"] == 2  # one cache, a view per protocol
    assert sorted(j["wildcards"]["protocol"] for j in jobs["split_view"]) == ["camera_ready", "table1"]
    for job in jobs["train"]:  # each run trains on its own protocol's split
        run, fold = job["wildcards"]["run"], int(job["wildcards"]["fold"])
        protocol = run.split("@")[1]
        assert f"results/splits/{protocol}/index.csv" in job["input"], (run, job["input"])
        assert fold == 0 if protocol == "table1" else fold in (0, 1, 2)
    per_protocol = defaultdict(int)
    for job in jobs["train"]:
        per_protocol[job["wildcards"]["run"].split("@")[1]] += 1
    assert per_protocol == {"table1": TABLE1_TRAININGS, "camera_ready": 12}
    replicas = TABLE1_TRAININGS * 5 + 12 * 12  # Regime A: 5 replicas; B: 12 per cell and fold
    assert counts["gather_samples"] == replicas
    assert counts["generate"] == replicas * Z_BINS  # paper.yaml: one job per z-bin
    for rule in ("metrics_image", "metrics_mask", "run_metrics"):  # one scoring job per (run, fold)
        assert counts[rule] == trainings
        assert all("results/splits/" in j["input"] for j in jobs[rule] if rule != "run_metrics")
    for rule in ("baseline", "aggregate_metrics", "figures", "paper_table"):
        assert counts[rule] == 1


@pytest.mark.slow
@pytest.mark.parametrize("overlay", [PILOT, PILOT_CI], ids=["pilot", "pilot-ci"])
def test_pilot_dag_has_exactly_the_paper_dag_rules(tmp_path, overlay, paper_dag):
    """From Snakemake's dry runs: the pilot's DAG, and its reduced form's, has the rules of the paper's (plus
    those of the paper's optional `released` grid), whatever config/paper.yaml and the rules say today."""
    want = pilot.expected_pilot_rules(pilot.job_rules(pilot.parse_job_stats(paper_dag.text)))
    run_config = tmp_path / "pilot" / pilot.RUN_CONFIG
    run_config.parent.mkdir()
    run_config.write_text(yaml.safe_dump({"extends": str(overlay), "data": {"raw_dir": str(paper_dag.raw)}}))
    pilot_jobs = pilot.dag_jobs(run_config, run_config.parent)
    assert pilot.rule_set_problems(pilot.job_rules(pilot_jobs), want, "the pilot's DAG") == []
    assert {"preprocess", "train", "generate", "metrics_image", "utility", "figures"} <= want
    assert "synth_cohort" not in pilot_jobs, "the pilot reads its cohort as raw data, as the paper does"
    ours = pilot.resolved(overlay)
    imported = pretrained_runs(ours)
    trained = [r for r, _ in run_folds(expand_runs(ours)) if r not in imported]
    assert pilot_jobs["preprocess"] == 4 and pilot_jobs["train"] == len(trained)
