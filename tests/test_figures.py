"""The paper table's formatting and every figure, built from a small fixture of metric files."""

import json

import numpy as np
import pandas as pd
import pytest

from slimdiff.cli import figures as figures_cli
from slimdiff.figures.table import config_table, to_latex, to_markdown
from slimdiff.metrics.morphology import FEATURES

RUNS = {"epsilon_lp1.5_sc0.5": 0.30, "v_lp1.5_sc0.5": 0.20, "x0_lp1.5_sc0.5": 0.10, "x0_lp2.0_sc0.5": 0.15}


def per_replica():
    rows = []
    for run, base in RUNS.items():
        for r, jitter in enumerate((-0.01, 0.0, 0.01)):
            rows.append(
                {
                    "run": run,
                    "fold": 0,
                    "prediction": run.split("_")[0],
                    "replica": r,
                    "kid": base + jitter,
                    "lpips": 0.5 - base + jitter,
                    "mmd_mf": np.nan if run.startswith("v") else base * 10,
                    "fid": base * 100,
                    "n_lesions": 2.5 if run.startswith("v") else 40,  # mean per replica: too few for MMD-MF
                    "lesion_rate_cls1": 0.05 if run.startswith("v") else 0.9,
                    "lesion_rate_cls0": 0.0 if run.startswith("v") else 0.05,
                    "area_median": 12.0 if run.startswith("v") else 30.0 + r,
                }
            )
    return pd.DataFrame(rows)


BASELINE = {
    "kid": 0.004,
    "lpips": 0.3,
    "mmd_mf": 0.09,
    "fid": 40.0,
    "n_lesions": 80,
    "lesion_rate_cls1": 0.95,
    "lesion_rate_cls0": 0.0,
    "area_median": 20.0,
}


def test_table_marks_best_bold_and_worst_underlined():
    table = config_table(per_replica(), BASELINE)
    assert list(table["run"])[:4] == ["epsilon_lp1.5_sc0.5", "v_lp1.5_sc0.5", "x0_lp1.5_sc0.5", "x0_lp2.0_sc0.5"]
    assert table.iloc[-1]["run"].startswith("real vs real")
    md = to_markdown(table).splitlines()
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in md[2:7]}
    assert rows["x0, p=1.5, sc 0.5"][0] == "**0.1000 ± 0.0100**"  # lowest KID
    assert rows["ε, p=1.5, sc 0.5"][0] == "<u>0.3000 ± 0.0100</u>"  # highest KID
    assert rows["ε, p=1.5, sc 0.5"][1] == "**0.2000 ± 0.0100**"  # LPIPS order is reversed
    assert rows["v, p=1.5, sc 0.5"][2] == "too few lesions (2.5 per replica)"  # said, not left blank
    assert rows["v, p=1.5, sc 0.5"][4:] == ["5 % / 0 %", "12"]
    assert rows["x0, p=1.5, sc 0.5"][4:] == ["90 % / 5 %", "31"]  # lesion rate class 1 / class 0, median area
    assert rows["real vs real (baseline)"][0] == "0.0040"  # the baseline is shown, never ranked
    assert rows["real vs real (baseline)"][4:] == ["95 % / 0 %", "20"]  # the real test slices' own lesions
    assert "n/a: not computable" in md[-1] and "at least 10 lesions" in md[-1]  # says why
    assert "Lesion rate: share of lesion-token" in "\n".join(md)
    complete = config_table(per_replica().fillna({"mmd_mf": 1.0}), BASELINE)
    assert "n/a" not in to_markdown(complete) and "too few" not in to_markdown(complete)
    tex = to_latex(table)
    assert r"\textbf{0.1000 $\pm$ 0.0100}" in tex and r"\underline{0.3000 $\pm$ 0.0100}" in tex
    assert r"\multicolumn{3}{l}{Real vs real (baseline)}" in tex and tex.count(r"\\") == 6
    assert r"90 \% / 5 \%" in tex and "too few lesions (2.5 per replica)" in tex


def test_huge_values_are_given_in_significant_digits():
    """A run whose masks are noise has an MMD-MF in the millions: powers of ten, not 10 digits."""
    noisy = per_replica()
    noisy.loc[noisy["run"].str.startswith("epsilon"), "mmd_mf"] = [1.9e6, 2.1e6, 2.0e6]
    md = to_markdown(config_table(noisy, BASELINE))
    assert "<u>2.00e+06 ± 1.00e+05</u>" in md and "**1.000 ± 0.000**" in md


def more_folds(table: pd.DataFrame) -> pd.DataFrame:
    """The best Table-1 run again on folds 1 and 2, and a decoupled twin on folds 0-2, all much worse."""
    x0 = table[table["run"] == "x0_lp1.5_sc0.5"]
    extra = [x0.assign(fold=f, kid=x0["kid"] + 0.8 + f / 10) for f in (1, 2)]
    extra += [x0.assign(run="x0_lp1.5_sc0.5-decoupled", fold=f, kid=x0["kid"] + 0.6 + f / 10) for f in (0, 1, 2)]
    return pd.concat([table, *extra], ignore_index=True)


def test_table_sections_never_pool_folds_or_families():
    table = config_table(more_folds(per_replica()), BASELINE)
    fold0 = table[(table["run"] == "x0_lp1.5_sc0.5") & (table["fold"] == "0")].iloc[0]
    assert fold0["replicas"] == 3 and fold0["kid_mean"] == pytest.approx(0.10)  # not averaged with folds 1-2
    across = table[table["family"] == "across folds"].set_index("run")
    assert list(across.index) == ["x0_lp1.5_sc0.5", "x0_lp1.5_sc0.5-decoupled"]
    fold_means = [0.10, 0.10 + 0.9, 0.10 + 1.0]
    assert across.loc["x0_lp1.5_sc0.5", "kid_mean"] == pytest.approx(np.mean(fold_means))
    assert across.loc["x0_lp1.5_sc0.5", "kid_std"] == pytest.approx(np.std(fold_means))  # ddof 0 across folds
    assert across.loc["x0_lp1.5_sc0.5", "fold"] == "0,1,2" and across.loc["x0_lp1.5_sc0.5", "replicas"] == 9
    assert table["family"].iloc[0] == "fold0/shared/sc0.5"  # the largest family (Table 1) comes first
    md = to_markdown(table)
    sections = [line.split("*")[1] for line in md.splitlines() if line.startswith("| *")]
    assert sections == [
        "fold 0, shared, sc 0.5",
        "fold 0, decoupled, sc 0.5",
        "fold 1, shared, sc 0.5",
        "fold 1, decoupled, sc 0.5",
        "fold 2, shared, sc 0.5",
        "fold 2, decoupled, sc 0.5",
        "across folds: mean ± std of the per-fold means",
    ]
    rows = [line for line in md.splitlines() if line.startswith("| x0, p=1.5, sc 0.5")]
    assert rows[0].split("|")[2].strip() == "**0.1000 ± 0.0100**"  # best of Table 1
    bold = [line for line in md.splitlines() if line.startswith("| ") and "**" in line.split("|")[2]]
    assert len(bold) == 2  # one best per family of two or more: Table 1 and across folds
    tex = to_latex(table)
    assert tex.count(r"\multicolumn{9}{l}{\textit{") == 7


def test_a_per_sample_coin_is_its_own_section_and_says_so_in_its_label():
    table = per_replica()
    x0 = table[table["run"] == "x0_lp1.5_sc0.5"]
    coin = x0.assign(run="x0_lp1.5_sc0.5-sample", kid=x0["kid"] + 0.05)
    md = to_markdown(config_table(pd.concat([table, coin], ignore_index=True), BASELINE))
    sections = [line.split("*")[1] for line in md.splitlines() if line.startswith("| *")]
    assert sections == ["fold 0, shared, sc 0.5", "fold 0, shared, per-sample coin, sc 0.5"]
    assert sum(line.startswith("| x0, p=1.5, sc 0.5 (per-sample coin) |") for line in md.splitlines()) == 1


def write_fixture(root):
    (root / "metrics").mkdir(parents=True)
    table = more_folds(per_replica())
    table.to_csv(root / "metrics" / "summary.csv", index=False)
    dunn = [
        {"a": "epsilon", "b": "x0", "z": 3.0, "p": 0.001, "p_bh": 0.003},
        {"a": "epsilon", "b": "v", "z": 1.0, "p": 0.3, "p_bh": 0.3},
    ]
    stats = {
        m: {"fold0/shared/sc0.5": {"between_predictions": {"dunn": dunn}}} for m in ("kid", "lpips", "mmd_mf", "fid")
    }
    (root / "metrics" / "summary.json").write_text(
        json.dumps({"baseline": BASELINE, "baseline_std": {"kid": 0.001}, "statistics": stats})
    )
    g = np.random.default_rng(0)
    zb, morph, tau, curves = [], [], [], []
    for run in RUNS:
        zb.append(
            pd.DataFrame(
                {
                    "run": run,
                    "fold": 0,
                    "z_bin": range(4),
                    "kid_mean": g.random(4),
                    "kid_std": 0.01,
                    "lpips_mean": g.random(4),
                    "lpips_std": 0.02,
                }
            )
        )
        morph.append(
            pd.DataFrame([{"run": run, "fold": 0, "replica": r, **{f: g.random() for f in FEATURES}} for r in range(2)])
        )
        tau.append(pd.DataFrame({"run": run, "fold": 0, "tau": [-0.1, 0.0, 0.1], "mmd_mf_mean": g.random(3)}))
        curves.append(pd.DataFrame({"run": run, "fold": 0, "epoch": range(5), "val_loss": np.linspace(1, 0.2, 5)}))
    lesions = pd.concat(
        [
            pd.DataFrame(
                {
                    "run": run,
                    "fold": 0,
                    "source": src,
                    "replica": -1 if src == "real" else 0,
                    **{f: g.random(6) for f in FEATURES},
                }
            )
            for run in RUNS
            for src in ("real", "synthetic")
        ]
    )
    lesions.to_csv(root / "metrics" / "lesions.csv", index=False)
    for name, frames in (("per_zbin", zb), ("morphology", morph), ("tau_sweep", tau), ("training_curves", curves)):
        pd.concat(frames).to_csv(root / "metrics" / f"{name}.csv", index=False)


def test_every_figure_and_table_builds(tmp_path, capsys, monkeypatch):
    from matplotlib.image import imread

    from slimdiff.figures import plots

    panels, dpis, save = {}, {}, plots.save

    def spy(fig, out_dir, stem, dpi):  # what each figure holds, just before it is written
        panels[stem] = [(ax.get_title(), len(ax.get_lines())) for ax in fig.axes]
        dpis[stem] = dpi
        return save(fig, out_dir, stem, dpi)

    monkeypatch.setattr(plots, "save", spy)
    write_fixture(tmp_path)
    assert figures_cli.main(["--results", str(tmp_path)]) == 0
    for stem in (
        "similarity_metrics",
        "per_zbin",
        "morphology",
        "lesion_features",
        "tau_sensitivity",
        "training_curves",
    ):
        png = imread(tmp_path / "figures" / f"{stem}.png")[..., :3]
        inked = (png < 0.9).any(axis=-1).mean()  # share of pixels that are not (near) white
        assert 0.02 < inked < 0.9 and png.std() > 0.05, f"{stem}: blank or flooded ({inked:.3f} inked)"
        assert (tmp_path / "figures" / f"{stem}.pdf").read_bytes()[:4] == b"%PDF"
    titles = [title.split(" (")[0] for title, _ in panels["similarity_metrics"]]
    assert titles == ["KID", "LPIPS", "MMD-MF"]
    assert [lines for _, lines in panels["per_zbin"]] == [len(RUNS), len(RUNS)]  # one line per run, fold 0
    assert [title for title, _ in panels["lesion_features"]] == [f.replace("_", " ") for f in FEATURES]
    assert panels["training_curves"][0][1] == len(RUNS)
    assert set(dpis) == set(panels) and set(dpis.values()) == {200}  # the CLI's --dpi, passed to every figure
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / "paper" / f"table.{ext}").stat().st_size > 0
    assert "| x0, p=1.5, sc 0.5 | **0.1000 ± 0.0100**" in capsys.readouterr().out


def test_figures_need_the_metrics(tmp_path):
    assert figures_cli.main(["--results", str(tmp_path)]) == 2


@pytest.mark.parametrize("p", [1.5, 2.25])
def test_run_names_parse(p):
    from slimdiff.experiments import parse_run, run_name

    assert parse_run(run_name("v", p, 0.8, "decoupled")) == {
        "prediction": "v",
        "p": p,
        "sc": 0.8,
        "variant": "decoupled",
        "coin": "batch",
        "source": "trained",
    }


def test_figures_and_table_share_the_prediction_labels():
    from slimdiff.figures import plots, table

    assert plots.PRED_TEX is table.PRED_TEX and set(table.PRED_TEX) == set(table.PRED_ORDER)


def test_dpi_is_passed_to_each_figure_not_kept_between_calls(tmp_path):
    """A figure drawn at one dpi leaves the next call's default alone: no module state holds the dpi."""
    from matplotlib.image import imread

    from slimdiff.figures import plots

    write_fixture(tmp_path)
    per_zbin = pd.read_csv(tmp_path / "metrics" / "per_zbin.csv")
    widths = {}
    for dpi in (50, 100, None):
        out = tmp_path / f"dpi{dpi}"
        out.mkdir()
        plots.per_zbin_figure(per_zbin, out, **({} if dpi is None else {"dpi": dpi}))
        widths[dpi] = imread(out / "per_zbin.png").shape[1]
    assert widths[100] / widths[50] == pytest.approx(2, rel=0.03)
    assert widths[None] / widths[100] == pytest.approx(2, rel=0.03)  # the default, 200, not the last dpi used
    assert not hasattr(plots, "DPI")


def test_figure_modules_leave_the_matplotlib_backend_alone():
    """Figures are drawn with matplotlib's object API: importing the modules neither selects a backend nor pyplot."""
    import subprocess
    import sys

    code = (
        "import sys, matplotlib; "
        "before = matplotlib.rcParams._get_backend_or_none(); "
        "import slimdiff.figures.plots, slimdiff.data.qc, slimdiff.generation.outputs; "
        "assert 'matplotlib.pyplot' not in sys.modules; "
        "assert matplotlib.rcParams._get_backend_or_none() == before"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
