"""The paper table's two renderers spell one cell model: the same marks, the same content, LaTeX kept valid."""

import math
import re

import pandas as pd

from slimdiff.figures.cells import Cell, Mark, Sym, table_view
from slimdiff.figures.render import _latex_cell, _markdown_cell, to_latex, to_markdown
from slimdiff.figures.table import config_table

BASELINE = {"kid": 0.004, "lpips": 0.3, "mmd_mf": 0.09, "fid": 40.0, "n_lesions": 80, "area_median": 20.0}


def per_replica(runs: dict[str, float]) -> pd.DataFrame:
    rows = [
        {"run": run, "fold": 0, "replica": r, "kid": v + d, "lpips": 0.5 - v, "mmd_mf": v * 10, "fid": v * 100}
        for run, v in runs.items()
        for r, d in enumerate((-0.01, 0.01))
    ]
    return pd.DataFrame(rows)


def test_a_cell_is_spelled_by_each_format():
    cell = Cell.number(0.12345, 0.01, 4).marked(Mark.BEST)
    assert _markdown_cell(cell) == "**0.1235 ± 0.0100**" and _latex_cell(cell) == r"\textbf{0.1235 $\pm$ 0.0100}"
    assert _markdown_cell(Cell.number(math.nan, 0.1, 4)) == "n/a" and _latex_cell(Cell.na()) == "--"
    assert _markdown_cell(Cell.number(12345.0, math.nan, 3)) == "1.23e+04"
    p = Cell.text("; ", Sym.DZ, " 1.00; zero_coupling better 2/3; ", Sym.P, " 0.25")
    assert _markdown_cell(p) == "; d_z 1.00; zero_coupling better 2/3; p 0.25"
    assert _latex_cell(p) == r"; $d_z$ 1.00; zero\_coupling better 2/3; $p$ 0.25"
    assert _markdown_cell(Cell()) == _latex_cell(Cell()) == ""


def test_markdown_and_latex_mark_the_same_cells():
    table = config_table(
        per_replica({"x0_lp1.5_sc0.5": 0.1, "v_lp1.5_sc0.5": 0.2, "epsilon_lp1.5_sc0.5": 0.3}), BASELINE
    )
    marks = [c.mark for row in table_view(table).rows for c in row.cells]
    md, tex = to_markdown(table), to_latex(table)
    assert md.count("**") // 2 == tex.count(r"\textbf{") == marks.count(Mark.BEST) == 4
    assert md.count("<u>") == tex.count(r"\underline{") == marks.count(Mark.WORST) == 4


def test_latex_escapes_the_names_it_prints():
    """A variant or protocol with an underscore appears in section titles and labels: LaTeX needs it escaped."""
    runs = {"x0_lp1.5_sc0.5": 0.1, "v_lp1.5_sc0.5": 0.2}
    runs |= {"x0_lp1.5_sc0.5-zero_coupling@camera_ready": 0.15, "v_lp1.5_sc0.5-zero_coupling@camera_ready": 0.25}
    tex = to_latex(config_table(per_replica(runs), BASELINE))
    assert r"\textit{camera\_ready, fold 0, zero\_coupling, sc 0.5}" in tex
    assert r"0.5 (zero\_coupling, camera-ready)" in tex
    outside_math = re.sub(r"\$[^$]*\$", "", tex)
    assert not re.search(r"(?<!\\)[_%#]", outside_math), outside_math
    md = to_markdown(config_table(per_replica(runs), BASELINE))
    assert "*camera_ready, fold 0, zero_coupling, sc 0.5*" in md  # Markdown keeps the names as they are
