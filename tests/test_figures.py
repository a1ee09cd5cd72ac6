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


@pytest.mark.slow
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
        "protocol": "",  # no named protocol: the config's own sections
    }


def test_figures_and_table_share_the_prediction_labels():
    from slimdiff.figures import plots, table

    assert plots.PRED_TEX is table.PRED_TEX and set(table.PRED_TEX) == set(table.PRED_ORDER)


@pytest.mark.slow
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


@pytest.mark.slow
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


# Downstream utility: summary.json's `utility` section, as slimdiff.utility.summary writes it (nulls for undefined).
UTILITY_SEEDS = (0, 1, 2)


def utility_arm(dice: list[float | None]) -> dict:
    """One arm: per-seed Dice, and the summary (mean, sample std) that summarise_seeds writes for it."""
    defined = np.array([d for d in dice if d is not None], float)
    per_seed = [{"seed": s, "dice_lesion_slices": d, "lesion_sensitivity": 0.5} for s, d in enumerate(dice)]
    complete = len(defined) == len(dice)
    mean = float(defined.mean()) if complete and len(defined) else None
    std = float(defined.std(ddof=1)) if complete and len(defined) > 1 else None
    return {"per_seed": per_seed, "summary": {"dice_lesion_slices": {"mean": mean, "std": std}}}


def utility_fixture() -> dict:
    """Fold 0: real-only Dice 0.20/0.24/0.28 (0.2400 ± 0.0400); x0 p1.5 real+syn 0.30/0.32/0.34, syn 0.10/0.11/0.12;
    x0 p2.0 real+syn 0.26 (one seed); folds 1, 2: x0 p1.5 only, one undefined syn seed on fold 2."""
    return {
        "real": {
            "fold0": utility_arm([0.20, 0.24, 0.28]),
            "fold1": utility_arm([0.30, 0.30, 0.30]),
            "fold2": utility_arm([0.40, 0.40, 0.40]),
        },
        "runs": {
            "x0_lp1.5_sc0.5/fold0": {
                "real+syn": utility_arm([0.30, 0.32, 0.34]),
                "syn": utility_arm([0.10, 0.11, 0.12]),
            },
            "x0_lp2.0_sc0.5/fold0": {"real+syn": utility_arm([0.26]), "syn": utility_arm([None])},
            "x0_lp1.5_sc0.5/fold1": {"real+syn": utility_arm([0.50, 0.50, 0.50]), "syn": utility_arm([0.2, 0.2, 0.2])},
            "x0_lp1.5_sc0.5/fold2": {"real+syn": utility_arm([0.40, 0.40, 0.40]), "syn": utility_arm([0.3, None, 0.3])},
        },
        "comparison": {},
        "tau": 0.0,
        "paired_metric": "dice_lesion_slices",
    }


def markdown_rows(md: str) -> dict[str, list[list[str]]]:
    """Label -> the cells of every row with that label (a run has one row per fold and one across folds)."""
    rows: dict[str, list[list[str]]] = {}
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| *"):
            rows.setdefault(line.split("|")[1].strip(), []).append([c.strip() for c in line.split("|")[2:-1]])
    return rows


def test_table_dice_columns_per_fold_and_real_only_row_before_the_baseline():
    one_fold = utility_fixture()
    one_fold["real"] = {"fold0": one_fold["real"]["fold0"]}
    one_fold["runs"] = {k: v for k, v in one_fold["runs"].items() if k.endswith("fold0")}
    table = config_table(per_replica(), BASELINE, utility=one_fold)
    assert list(table["kind"])[-2:] == ["real only (segmenter)", "baseline"]
    md = to_markdown(table)
    lines = md.splitlines()
    assert lines[0].endswith("| Lesion area (px) | Dice real+syn | Dice syn only |")
    rows = markdown_rows(md)
    assert rows["x0, p=1.5, sc 0.5"][0][-2:] == ["0.3200 ± 0.0200", "0.1100 ± 0.0100"]
    assert rows["x0, p=2, sc 0.5"][0][-2:] == ["0.2600", "n/a"]  # one seed: no std; an undefined seed: n/a
    assert rows["ε, p=1.5, sc 0.5"][0][-2:] == ["n/a", "n/a"]  # no utility result for the run
    assert rows["real only (segmenter; fold 0)"] == [[""] * 6 + ["0.2400 ± 0.0400"] * 2]
    assert rows["real vs real (baseline)"][0][-2:] == ["", ""]
    labels = [line.split("|")[1].strip() for line in lines if line.startswith("| ")]
    assert labels[-2:] == ["real only (segmenter; fold 0)", "real vs real (baseline)"]
    assert "Lower is better for KID, LPIPS, MMD-MF and FID" in md and "Lower is better for every metric" not in md
    assert "Higher is better for the Dice columns, which are not ranked." in md
    assert "segmenter trained on the fold's real training slices plus the run's synthetic" in md
    assert "for reference (fold 0)" in md
    # Dice is never ranked: the bold/underlined cells are those of the table without the utility section.
    assert md.count("**") == to_markdown(config_table(per_replica(), BASELINE)).count("**")
    assert "<u>0.3200" not in md and "**0.3200" not in md and "sections" not in md
    tex = to_latex(table)
    assert r"Dice real+syn $\uparrow$ & Dice syn only $\uparrow$ \\" in tex
    assert r"& 0.3200 $\pm$ 0.0200 & 0.1100 $\pm$ 0.0100 \\" in tex and r"& 0.2600 & -- \\" in tex
    real_only = r"\multicolumn{3}{l}{Real only (segmenter; fold 0)} &  &  &  &  &  &  & 0.2400 $\pm$ 0.0400"
    assert real_only in tex and tex.index(real_only) < tex.index("Real vs real (baseline)")
    assert tex.count(r"\midrule") == 2 and r"{lllcccccccc}" in tex  # one rule above both reference rows
    assert tex.count(r"\\") == 7  # header, four configurations, real only, baseline


def test_table_dice_across_folds_is_the_mean_and_population_std_of_fold_means():
    table = config_table(more_folds(per_replica()), BASELINE, utility=utility_fixture())
    across = table[(table["family"] == "across folds") & (table["run"] == "x0_lp1.5_sc0.5")].iloc[0]
    assert across["dice_real_syn_mean"] == pytest.approx(np.mean([0.32, 0.50, 0.40]))
    assert across["dice_real_syn_std"] == pytest.approx(np.std([0.32, 0.50, 0.40]))  # ddof 0 across folds
    assert across["dice_syn_mean"] == pytest.approx(np.mean([0.11, 0.20]))  # fold 2's syn mean is undefined
    rows = markdown_rows(to_markdown(table))
    assert rows["x0, p=1.5, sc 0.5"][-1][-2:] == ["0.4067 ± 0.0736", "0.1550 ± 0.0450"]  # the across-folds row
    assert rows["x0, p=1.5, sc 0.5 (decoupled)"][-1][-2:] == ["n/a", "n/a"]
    real = np.mean([0.24, 0.30, 0.40]), np.std([0.24, 0.30, 0.40])
    assert rows["real only (segmenter; folds 0, 1, 2)"][0][-1] == f"{real[0]:.4f} ± {real[1]:.4f}"
    assert "for reference (folds 0, 1, 2; mean ± population std of its per-fold means)" in to_markdown(table)
    assert "real only" not in "".join(line for line in to_markdown(table).splitlines() if line.startswith("| *"))


def test_table_without_the_utility_section_is_unchanged(tmp_path):
    """No utility section (an older summary, a config without the stage): no Dice columns, no real-only row."""
    from slimdiff.figures.table import write_tables

    table = config_table(more_folds(per_replica()), BASELINE)
    assert not [c for c in table.columns if c.startswith("dice")] and "real only (segmenter)" not in set(table["kind"])
    md = to_markdown(table)
    assert "Dice" not in md and "real only" not in md and "segmenter" not in md
    assert "Lower is better for every metric" in md and "Higher is better" not in md
    assert "Dice" not in to_latex(table) and to_latex(table).count(r"\midrule") == 8
    for name, utility in (("absent", None), ("present", utility_fixture())):
        write_tables(more_folds(per_replica()), BASELINE, tmp_path / name, utility=utility)
    absent = pd.read_csv(tmp_path / "absent" / "table.csv")
    present = pd.read_csv(tmp_path / "present" / "table.csv")
    assert set(present.columns) - set(absent.columns) == {
        "dice_real_syn_mean",
        "dice_real_syn_std",
        "dice_syn_mean",
        "dice_syn_std",
    }
    assert len(present) == len(absent) + 1 and present["kind"].iloc[-2] == "real only (segmenter)"
    assert (tmp_path / "absent" / "table.md").read_text() == md


def test_utility_figure_draws_every_seed_of_every_arm(tmp_path, monkeypatch):
    from matplotlib.collections import PathCollection

    from slimdiff.figures import plots

    figures, save = {}, plots.save

    def spy(fig, out_dir, stem, dpi):
        figures[stem] = fig
        return save(fig, out_dir, stem, dpi)

    monkeypatch.setattr(plots, "save", spy)
    utility = utility_fixture()
    utility["runs"] = {k: v for k, v in utility["runs"].items() if k != "x0_lp2.0_sc0.5/fold0"}  # 3 seeds each
    utility["runs"]["x0_lp1.5_sc0.5/fold2"]["syn"] = utility_arm([0.3, 0.31, 0.32])
    utility["runs"]["v_lp1.5_sc0.5/fold0"] = {"real+syn": utility_arm([0.1] * 3), "syn": utility_arm([0.05] * 3)}
    paths = plots.utility_figure(utility, tmp_path, dpi=60)
    assert [p.name for p in paths] == ["utility.png", "utility.pdf"]
    fig = figures["utility"]
    assert fig._suptitle.get_text() == "Segmenter Dice on real test lesion slices (higher is better)"
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["fold 0", "fold 1", "fold 2"]  # one panel per fold
    runs_per_fold = [2, 1, 1]
    for ax, runs in zip(axes, runs_per_fold, strict=True):
        points = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert sum(len(c.get_offsets()) for c in points) == len(UTILITY_SEEDS) * 3 * runs  # seeds x arms x runs
        assert len(ax.get_lines()) == 3 * runs  # one mean bar per arm and run
        assert len(ax.get_xticklabels()) == runs
    fold0 = axes[0]
    assert [t.get_text() for t in fold0.get_xticklabels()] == [r"$\mathbf{v}$ p1.5 sc0.5", r"$\mathbf{x}_0$ p1.5 sc0.5"]
    colours = {tuple(np.round(c.get_facecolor()[0][:3], 3)) for c in fold0.collections}
    assert len(colours) == 3  # one colour per arm
    x0 = [c for c in fold0.collections if 0.7 < c.get_offsets()[:, 0].mean() < 1.3]  # the second group: x0 p1.5
    dice = sorted(float(v) for c in x0 for v in c.get_offsets()[:, 1])
    assert dice == pytest.approx(sorted([0.20, 0.24, 0.28, 0.30, 0.32, 0.34, 0.10, 0.11, 0.12]))
    bars = {round(float(line.get_ydata()[0]), 4) for line in fold0.get_lines()}
    assert {0.24, 0.32, 0.11} <= bars  # the means over seeds


@pytest.mark.slow
def test_utility_figure_says_when_the_stage_did_not_run(tmp_path, monkeypatch):
    from slimdiff.figures import plots

    texts, save = {}, plots.save

    def spy(fig, out_dir, stem, dpi):
        if stem == "utility":
            texts[stem] = [t.get_text() for ax in fig.axes for t in ax.texts] + [fig._suptitle.get_text()]
        return save(fig, out_dir, stem, dpi)

    monkeypatch.setattr(plots, "save", spy)
    write_fixture(tmp_path)  # a summary.json without the utility section
    assert figures_cli.main(["--results", str(tmp_path), "--dpi", "60"]) == 0
    assert (tmp_path / "figures" / "utility.pdf").read_bytes()[:4] == b"%PDF"
    assert texts["utility"][0] == "The downstream utility stage did not run:\nsummary.json has no utility section."
    assert texts["utility"][-1].startswith("Segmenter Dice")
    # with the section, drawn from summary.json by the same command
    summary = json.loads((tmp_path / "metrics" / "summary.json").read_text())
    (tmp_path / "metrics" / "summary.json").write_text(json.dumps({**summary, "utility": utility_fixture()}))
    assert figures_cli.main(["--results", str(tmp_path), "--dpi", "60"]) == 0
    assert not any("did not run" in t for t in texts["utility"])
