"""benchmarks/test_times.py, which writes docs/results/test-times.md: it reads pytest's output as pytest prints it."""

import importlib.util

from conftest import REPO

spec = importlib.util.spec_from_file_location("test_times", REPO / "benchmarks" / "test_times.py")
test_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_times)

OUTPUT = """
============================= slowest 15 durations =============================
210.50s setup    tests/test_workflow.py::test_dvc_repro_runs_every_stage
77.85s call     tests/test_workflow.py::test_rerun_contract_on_the_finished_project
0.02s call     tests/test_cli.py::test_help
=========== 631 passed, 2 skipped, 69 warnings in 586.33s (0:09:46) ============
"""


def test_summary_and_slowest_tests_are_read():
    r = test_times.read_pytest(OUTPUT)
    assert r["pytest"] == "631 passed, 2 skipped, 69 warnings" and r["pytest_s"] == 586.33
    assert r["slowest"][0] == (210.5, "tests/test_workflow.py::test_dvc_repro_runs_every_stage (setup)")
    assert len(r["slowest"]) == 3
    assert test_times.read_pytest("make: *** [test] Error 2")["pytest_s"] is None


def test_the_page_says_whether_each_goal_is_met():
    fast = {"target": "test-fast", "rc": 0, "wall_s": 83.0, **test_times.read_pytest(OUTPUT)}
    slow = {**fast, "target": "test", "wall_s": 605.0}
    failed = {**fast, "target": "test-pipelines", "rc": 2}
    page = test_times.page([fast, slow, failed], {"commit": "abc1234", "cpu": "a CPU", "cores": 2}, "cmd")
    assert "| 1 min 23 s | ok | 2 min 00 s: met |" in page
    assert "| 10 min 05 s | ok | 10 min 00 s: NOT met |" in page
    assert "FAILED (exit 2) | - |" in page and "commit abc1234" in page and "a CPU, 2 cores" in page
