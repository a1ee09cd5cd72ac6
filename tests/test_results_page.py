"""benchmarks/results_page.py: a finished run's table goes into a docs page between its markers, stamped."""

from __future__ import annotations

import importlib.util
import subprocess

from conftest import REPO


def _tool():
    spec = importlib.util.spec_from_file_location("results_page", REPO / "benchmarks" / "results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_table_block_is_replaced_in_place_and_stamped(tmp_path, monkeypatch, capsys):
    tool = _tool()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "x"]
    subprocess.run(git, cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    page = tmp_path / "page.md"
    page.write_text(f"# Title\n\nprose before\n\n{tool.BEGIN}\nold table\n{tool.END}\n\nprose after\n")
    assert tool.main(["--page", str(page), "--command", "make run"]) == 2  # no results yet
    assert "paper table" in capsys.readouterr().err and "old table" in page.read_text()

    (tmp_path / "results" / "paper").mkdir(parents=True)
    (tmp_path / "results" / "paper" / "table.md").write_text("| a | b |\n|---|---|\n| 1 | 2 |\n")
    (tmp_path / "seconds.txt").write_text("700 s, pipeline and report\n")
    for _ in range(2):  # a second run replaces the block, never adds one
        assert tool.main(["--page", str(page), "--command", "make run", "--seconds", "seconds.txt"]) == 0
    text = page.read_text()
    assert text.count(tool.BEGIN) == 1 and "old table" not in text and "| 1 | 2 |" in text
    assert text.startswith("# Title\n\nprose before\n\n") and text.endswith("\n\nprose after\n")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    assert f"commit {head.stdout.strip()}" in text and "`make run`" in text and "wall time 700 s" in text
