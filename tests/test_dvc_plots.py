"""dvc.yaml's plots: one line per run and fold, and a page that renders offline (issue #30)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "report" / "dvc_plots"
RUNS = [("x0_lp1.5_sc0.5", 0), ("epsilon_lp1.5_sc0.5", 0), ("x0_lp1.5_sc0.5", 1)]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _dvc() -> str:
    dvc = Path(sys.executable).with_name("dvc")
    if not dvc.exists():
        pytest.skip("dvc not installed beside this python")
    return str(dvc)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A git+DVC project with this repository's plot definitions and templates, and stacked per-run CSVs."""
    proj = tmp_path_factory.mktemp("dvc_plots")
    dvc = _dvc()
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=proj, check=True)
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]
    (proj / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    shutil.copytree(TEMPLATES, proj / "report" / "dvc_plots", ignore=shutil.ignore_patterns("*.py"))
    metrics = proj / "results" / "metrics"
    metrics.mkdir(parents=True)
    curves, zbins = [], []
    for i, (run, fold) in enumerate(RUNS):
        curves.append(
            pd.DataFrame(
                {"epoch": range(4), "step": range(0, 40, 10), "train_loss": 1.0 + i, "val_loss": [2.0 + i, 1, 0.5, 0.4]}
            ).assign(run=run, fold=fold)
        )
        zbins.append(
            pd.DataFrame({"z_bin": range(3), "kid_mean": [0.1 * i, None, 0.2], "lpips_mean": 0.3 + 0.1 * i}).assign(
                run=run, fold=fold
            )
        )
    pd.concat(curves).to_csv(metrics / "training_curves.csv", index=False)
    pd.concat(zbins).to_csv(metrics / "per_zbin.csv", index=False)
    return proj


def _specs(project) -> dict:
    out = subprocess.run([_dvc(), "plots", "show", "--json"], cwd=project, capture_output=True, text=True, check=True)
    return {plot_id: entries[0]["content"] for plot_id, entries in json.loads(out.stdout)["data"].items()}


@pytest.mark.slow
def test_every_plot_colours_by_run_and_fold(project):
    specs = _specs(project)
    assert set(specs) == {"val_loss", "train_loss", "kid_per_zbin", "lpips_per_zbin"}
    for plot_id, spec in specs.items():
        assert spec["encoding"]["color"]["field"] == "series", plot_id
        assert {"calculate": "datum.run + '/fold' + datum.fold", "as": "series"} in spec["transform"]
        rows = spec["data"]["values"]
        assert {(r["run"], int(r["fold"])) for r in rows} == set(RUNS), plot_id  # all columns reach the template


@pytest.mark.slow
def test_offline_page_has_no_remote_script(project, tmp_path):
    out = tmp_path / "plots"
    subprocess.run(
        [_dvc(), "plots", "show", "--html-template", "report/dvc_plots/offline.html", "-o", str(out)],
        cwd=project,
        capture_output=True,
        check=True,
    )
    page = (out / "index.html").read_text()
    assert "vegaEmbed(" in page and page.count("<div id") >= 4
    tags = re.findall(r"<script\b[^>]*>", page, flags=re.I)
    assert tags and not [t for t in tags if "src" in t.lower()], tags  # everything inline: no CDN, no file
    assert not re.search(r"<link\b[^>]*https?://", page, flags=re.I)
    assert "BSD" in page and "University of Washington Interactive Data Lab" in page  # the licence travels along


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
@pytest.mark.slow
def test_inlined_vega_draws_a_line_per_run_and_fold(project, tmp_path):
    """The page's own Vega/Vega-Lite builds, run headless in node: one line mark per (run, fold) series."""
    page = (TEMPLATES / "offline.html").read_text()
    scripts = re.findall(r"<script>/\* (vega(?:-lite)?) [\d.]+ \*/\n(.*?)\n</script>", page, flags=re.S)
    assert [name for name, _ in scripts] == ["vega", "vega-lite"]
    for name, js in scripts:
        (tmp_path / f"{name}.js").write_text(js)
    (tmp_path / "specs.json").write_text(json.dumps(_specs(project)))
    (tmp_path / "render.js").write_text(
        """
const vm = require('vm'), fs = require('fs'), dir = process.argv[2];
for (const f of ['vega.js', 'vega-lite.js']) vm.runInThisContext(fs.readFileSync(dir + '/' + f, 'utf8'));
const specs = JSON.parse(fs.readFileSync(dir + '/specs.json', 'utf8'));
(async () => {
  const out = {};
  for (const [id, spec] of Object.entries(specs)) {
    const view = new vega.View(vega.parse(vegaLite.compile(spec).spec), {renderer: 'none'});
    const svg = await view.toSVG();
    out[id] = (svg.match(/aria-roledescription="line mark"/g) || []).length;
  }
  console.log(JSON.stringify(out));
})();
"""
    )
    proc = subprocess.run(["node", str(tmp_path / "render.js"), str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = json.loads(proc.stdout)
    assert lines == {"val_loss": 3, "train_loss": 3, "kid_per_zbin": 3, "lpips_per_zbin": 3}


def _render_check():
    spec = importlib.util.spec_from_file_location("render_check", ROOT / "benchmarks" / "render_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (benchmarks/render_check.py)")
@pytest.mark.slow
def test_offline_page_draws_in_a_browser_and_dvc_default_does_not(project, tmp_path, monkeypatch):
    """Headless Chromium with every host unreachable: our template draws lines; DVC's CDN page stays blank."""
    render = _render_check()
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    assert render.check_plots(project, tmp_path / "offline") == []
    rgb = np.asarray(Image.open(tmp_path / "offline" / "dvc_plots.png").convert("RGB"))
    assert render.coloured_fraction(rgb) > 1e-3

    default = tmp_path / "cdn"
    subprocess.run([_dvc(), "plots", "show", "-o", str(default)], cwd=project, capture_output=True, check=True)
    cdn = render.screenshot(default / "index.html", tmp_path / "cdn.png", height=2400)
    assert render.coloured_fraction(cdn) < 1e-4, "DVC's own page should need the network: the check can fail"
