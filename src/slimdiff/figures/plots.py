"""Publication figures from the metrics files (PNG and PDF), one colour per prediction type throughout.

similarity_metrics   KID, LPIPS, MMD-MF per configuration of the largest comparison family (Table 1: one fold,
                     shared, sc 0.5; replicas as boxes), real-vs-real baseline line, significance brackets
                     between prediction types (Dunn within that family, BH-adjusted p < 0.05)
per_zbin             KID and LPIPS per z-bin, one line per configuration with its subset std band (lowest fold)
morphology           mean per-feature Wasserstein-1 (z-scored) of generated vs real lesions, per configuration
                     (lowest fold)
lesion_features      distributions of the per-lesion features, real test lesions vs generated (lowest fold)
tau_sensitivity      MMD-MF as the generated-mask threshold moves (lowest fold)
training_curves      validation loss and mask-channel lesion Dice per epoch of every run
coupling_by_fold     Regime B, only when summary.json has it: per metric, each fold's shared and other-variant
                     values joined by a line (one line per fold), with the paired difference's statistics
utility              downstream utility: segmenter Dice on the real test lesion slices per run and arm (real
                     only, real + synthetic, synthetic only), one point per seed, one panel per fold; always
                     drawn, as a figure that says so when summary.json has no utility section

Figures are matplotlib Figure objects saved directly, without pyplot: no global backend is selected.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from slimdiff.experiments import comparison_family, parse_run
from slimdiff.figures.labels import DICE_METRIC, PRED_ORDER, PRED_TEX, family_title
from slimdiff.io import as_float, atomic_path, read_json, read_table
from slimdiff.names import FIGURE_METRICS, AggregatedFiles, parse_fold_key, parse_run_fold_key
from slimdiff.names import MORPHOLOGY_FEATURES as FEATURES

# Paul Tol colours used by the paper: epsilon orange, v teal, x0 wine.
COLOURS = {"epsilon": "#EE7733", "v": "#009988", "x0": "#882255"}
LINESTYLES = ["-", "--", ":", "-."]
INPUT_LINESTYLE = (0, (2, 1))  # thin short dashes: the noisy input's Dice in the training figure (not a fold)
STYLE = {
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 200,
}
DEFAULT_DPI = 200  # of the PNGs; every figure function takes its own `dpi`


def save(fig: Figure, out_dir: Path, stem: str, dpi: int) -> list[Path]:
    """STEM.png (at `dpi`) and STEM.pdf in out_dir."""
    paths = []
    for ext in ("png", "pdf"):
        path = out_dir / f"{stem}.{ext}"
        with atomic_path(path, suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, bbox_inches="tight", dpi=dpi)
        paths.append(path)
    return paths


def config_order(runs) -> list[str]:
    return sorted(
        set(runs),
        key=lambda r: (
            PRED_ORDER.get(parse_run(r)["prediction"], 9),
            parse_run(r)["p"],
            parse_run(r)["sc"],
            parse_run(r)["variant"],
            parse_run(r)["coin"],
            parse_run(r)["source"],
        ),
    )


def short(run: str) -> str:
    c = parse_run(run)
    label = f"p{c['p']:g} sc{c['sc']:g}" + ("" if c["variant"] == "shared" else f" {c['variant'][:4]}")
    label += " ps" if c["coin"] == "sample" else ""  # per-sample self-conditioning coin
    return label + (" pre" if c["source"] == "pretrained" else "")  # imported, not trained here


def primary_family(table: pd.DataFrame) -> str:
    """The comparison family with the most runs (Table 1 in the paper's config); ties go to the first name."""
    families = table.assign(family=[comparison_family(r, f) for r, f in zip(table["run"], table["fold"], strict=True)])
    counts = families.groupby("family")["run"].nunique()
    return sorted(counts.index, key=lambda f: (-counts[f], f))[0]


def first_fold(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the lowest fold: every run has it in the paper's design, and folds are never pooled."""
    return frame[frame["fold"] == frame["fold"].min()] if "fold" in frame and len(frame) else frame


def similarity_figure(summary_csv, summary_json, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """The primary family's runs (one fold, one variant, one self-conditioning), so boxes never mix folds."""
    table = read_table(summary_csv)
    summary = read_json(summary_json)
    family = primary_family(table)
    table = table[[comparison_family(r, f) == family for r, f in zip(table["run"], table["fold"], strict=True)]]
    runs = config_order(table["run"])
    with rc_context(STYLE):
        fig = Figure(figsize=(7.0, 2.6))
        axes = fig.subplots(1, 3)
        for ax, (metric, title) in zip(axes, [(m.name, m.label) for m in FIGURE_METRICS], strict=True):
            data = [table.loc[table["run"] == r, metric].dropna().to_numpy() for r in runs]
            pos = np.arange(len(runs))
            for x, r, d in zip(pos, runs, data, strict=True):
                colour = COLOURS.get(parse_run(r)["prediction"], "grey")
                if len(d):
                    ax.boxplot(
                        d,
                        positions=[x],
                        widths=0.6,
                        whis=(5, 95),
                        showfliers=False,
                        patch_artist=True,
                        boxprops={"facecolor": colour, "alpha": 0.35, "edgecolor": colour},
                        medianprops={"color": colour},
                        whiskerprops={"color": colour},
                        capprops={"color": colour},
                    )
                    ax.scatter(np.full(len(d), x), d, s=8, color=colour, zorder=3)
                else:
                    ax.text(x, 0.5, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=7, color="grey")
            base = summary["baseline"].get(metric, math.nan)
            band = (summary.get("baseline_std") or {}).get(metric)
            if base is not None and np.isfinite(base):
                ax.axhline(base, color="grey", ls="--", lw=1, label="real vs real")
                if band is not None and np.isfinite(band):  # subset std of the baseline estimate
                    ax.axhspan(base - band, base + band, color="grey", alpha=0.15, lw=0)
            _brackets(ax, summary["statistics"].get(metric, {}).get(family, {}), runs, data)
            ax.set_xticks(pos, [short(r) for r in runs], rotation=45, ha="right")
            ax.set_xlim(-0.5, len(runs) - 0.5)
            ax.set_title(f"{title} (lower is better)")
        handles = [
            Line2D([], [], color=c, marker="s", ls="", label=PRED_TEX[p])
            for p, c in COLOURS.items()
            if any(parse_run(r)["prediction"] == p for r in runs)
        ]
        handles.append(Line2D([], [], color="grey", ls="--", label="real vs real"))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.12), frameon=False)
        fig.suptitle(family_title(family), fontsize=8)
        fig.tight_layout()
        return save(fig, Path(out_dir), "similarity_metrics", dpi)


def _brackets(ax, stats: dict, runs: list[str], data: list[np.ndarray]) -> None:
    """Brackets between prediction types whose Dunn test (BH-adjusted) is significant."""
    dunn = (stats.get("between_predictions") or {}).get("dunn", [])
    centres = {}
    for i, r in enumerate(runs):
        centres.setdefault(parse_run(r)["prediction"], []).append(i)
    finite = [v for d in data for v in d if np.isfinite(v)]
    if not finite:
        return
    top, span = max(finite), (max(finite) - min(finite)) or abs(max(finite)) or 1.0
    level = 0
    for test in dunn:
        if test.get("p_bh", 1.0) >= 0.05 or test["a"] not in centres or test["b"] not in centres:
            continue
        xa, xb = np.mean(centres[test["a"]]), np.mean(centres[test["b"]])
        y = top + span * (0.08 + 0.1 * level)
        ax.plot([xa, xa, xb, xb], [y - span * 0.02, y, y, y - span * 0.02], color="black", lw=0.7)
        stars = "***" if test["p_bh"] < 0.001 else "**" if test["p_bh"] < 0.01 else "*"
        ax.text((xa + xb) / 2, y, stars, ha="center", va="bottom", fontsize=7)
        level += 1


def per_zbin_figure(per_zbin: pd.DataFrame, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """`per_zbin`: the stacked per-run tables (columns run, fold, z_bin, kid_mean, ...); fold 0 is drawn."""
    with rc_context(STYLE):
        fig = Figure(figsize=(7.0, 2.4))
        axes = fig.subplots(1, 2)
        per_zbin = first_fold(per_zbin)
        frames = {r: g.sort_values("z_bin") for r, g in per_zbin.groupby("run")}
        runs = config_order(frames)
        ps = sorted({parse_run(r)["p"] for r in runs})
        for ax, (metric, std, title) in zip(
            axes, [("kid_mean", "kid_std", "KID"), ("lpips_mean", "lpips_std", "LPIPS")], strict=True
        ):
            for r in runs:
                f, c = frames[r], parse_run(r)
                colour, ls = COLOURS.get(c["prediction"], "grey"), LINESTYLES[ps.index(c["p"]) % 4]
                ax.plot(
                    f["z_bin"], f[metric], color=colour, ls=ls, lw=1.2, label=f"{PRED_TEX[c['prediction']]} {short(r)}"
                )
                ax.fill_between(f["z_bin"], f[metric] - f[std], f[metric] + f[std], color=colour, alpha=0.12, lw=0)
            ax.set(xlabel="z-bin", title=f"{title} per z-bin")
        axes[1].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout()
        return save(fig, Path(out_dir), "per_zbin", dpi)


def morphology_figure(morphology: pd.DataFrame, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """Heat map of the mean per-feature Wasserstein-1 of generated vs real lesions, one row per run (lowest fold)."""
    with rc_context(STYLE):
        frames = dict(tuple(first_fold(morphology).groupby("run")))
        runs = config_order(frames)
        heat = np.array([[frames[r][f].mean() for f in FEATURES] for r in runs])
        fig = Figure(figsize=(3.6, 0.35 * len(runs) + 1.2))
        ax = fig.subplots()
        im = ax.imshow(heat, cmap="RdYlGn_r", aspect="auto")
        ax.set_xticks(
            range(len(FEATURES)),
            ["Area", "Perim.", "Circ.", "Solid.", "Extent", "Eccen.", "Major", "Minor", "Eq.Dia."],
            rotation=45,
            ha="right",
        )
        ax.set_yticks(range(len(runs)), [f"{parse_run(r)['prediction']} {short(r)}" for r in runs])
        fig.colorbar(im, ax=ax, label="Wasserstein-1 (z-scored)")
        ax.set_title("Lesion morphology: generated vs real (n/a = too few lesions)")
        fig.tight_layout()
        return save(fig, Path(out_dir), "morphology", dpi)


def tau_sensitivity_figure(tau: pd.DataFrame, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """MMD-MF against the generated-mask threshold tau, one line per run (lowest fold)."""
    with rc_context(STYLE):
        fig = Figure(figsize=(3.4, 2.4))
        ax = fig.subplots()
        tau = first_fold(tau)
        for r in config_order(tau["run"]):
            f = tau[tau["run"] == r].groupby("tau", as_index=False)["mmd_mf_mean"].mean()
            ax.plot(
                f["tau"],
                f["mmd_mf_mean"],
                marker="o",
                ms=3,
                color=COLOURS.get(parse_run(r)["prediction"], "grey"),
                label=f"{PRED_TEX[parse_run(r)['prediction']]} {short(r)}",
            )
        ax.axvline(0.0, color="grey", lw=0.6, ls=":")
        ax.set(xlabel=r"mask threshold $\tau$", ylabel="MMD-MF", title=r"$\tau$ sensitivity")
        ax.legend(frameon=False, fontsize=6)
        fig.tight_layout()
        return save(fig, Path(out_dir), "tau_sensitivity", dpi)


def training_figure(curves: pd.DataFrame, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """Validation loss, then one panel per mask-Dice timestep: when the mask channel starts to draw lesions.

    Dashed, per run: what the rescaled noisy input alone scores at that t (log.csv input_dice_t<t>, when the
    run logged it). At small t the input still holds the true mask, so only the gap above the dashed line is
    the network's own.
    """
    dice = sorted((c for c in curves.columns if c.startswith("mask_dice_t")), key=lambda c: int(c[11:]))
    panels = [("val_loss", "validation loss (EMA)")] + [(c, f"lesion Dice at t = {c[11:]}") for c in dice]
    with rc_context(STYLE):
        fig = Figure(figsize=(3.4 * len(panels), 2.4))
        axes = fig.subplots(1, len(panels), squeeze=False)
        for ax, (column, ylabel) in zip(axes[0], panels, strict=True):
            groups = sorted(curves.groupby(["run", "fold"]), key=lambda kv: (config_order([kv[0][0]]), kv[0]))
            reference = f"input_dice_t{column[11:]}"  # the copy-the-input score beside a mask_dice_t<t> column
            for (r, fold), f in groups:
                colour = COLOURS.get(parse_run(r)["prediction"], "grey")
                ax.plot(
                    f["epoch"],
                    f[column],
                    color=colour,
                    ls=LINESTYLES[fold % 4],
                    label=f"{PRED_TEX[parse_run(r)['prediction']]} {short(r)} f{fold}",
                )
                if column != "val_loss" and reference in f and f[reference].notna().any():
                    ax.plot(f["epoch"], f[reference], color=colour, ls=INPUT_LINESTYLE, lw=0.7, alpha=0.6)
            ax.set(xlabel="epoch", ylabel=ylabel)
            if column == "val_loss":
                ax.set(title="Training curves", yscale="log")
                ax.legend(frameon=False, fontsize=6)
            else:
                ax.set(title="Mask channel (validation lesion slices)", ylim=(0, 1))
                if reference in curves and curves[reference].notna().any():
                    ax.plot([], [], color="grey", ls=INPUT_LINESTYLE, lw=0.7, label="noisy input alone (thin)")
                    ax.legend(frameon=False, fontsize=6, loc="lower right")
        fig.tight_layout()
        return save(fig, Path(out_dir), "training_curves", dpi)


def lesion_feature_figure(lesions: pd.DataFrame, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """Distributions of the 9 per-lesion features: real test lesions vs generated ones per prediction type."""
    with rc_context(STYLE):
        fig = Figure(figsize=(7.0, 5.4))
        axes = fig.subplots(3, 3)
        lesions = first_fold(lesions)
        real = lesions[lesions["source"] == "real"]
        real = real[real["run"] == real["run"].min()] if len(real) else real  # the same test lesions in every run
        fake = lesions[lesions["source"] == "synthetic"]
        fake = fake.assign(prediction=fake["run"].map(lambda r: parse_run(r)["prediction"]))
        for ax, feature in zip(axes.flat, FEATURES, strict=True):
            values = pd.concat([real[feature], fake[feature]]).dropna()
            bins = np.histogram_bin_edges(values, bins=20) if len(values) else 10
            if len(real):
                ax.hist(real[feature], bins=bins, density=True, color="grey", alpha=0.5, label="real")
            for pred, g in fake.groupby("prediction"):
                ax.hist(
                    g[feature],
                    bins=bins,
                    density=True,
                    histtype="step",
                    lw=1.2,
                    color=COLOURS.get(pred, "black"),
                    label=PRED_TEX.get(pred, pred),
                )
            ax.set_title(feature.replace("_", " "))
            if not len(values):
                ax.text(0.5, 0.5, "no lesions", transform=ax.transAxes, ha="center", color="grey")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(
                handles, labels, loc="lower center", ncol=len(handles), frameon=False, bbox_to_anchor=(0.5, -0.03)
            )
        fig.suptitle("Lesion morphology: real test lesions vs generated", fontsize=9)
        fig.tight_layout()
        return save(fig, Path(out_dir), "lesion_features", dpi)


MARKERS = ["o", "s", "^", "D", "v"]


def paired_comparisons(regime_b: dict | None) -> list[tuple[str, str, dict]]:
    """(shared run, other variant, comparison) for every Regime B comparison with at least two paired folds."""
    out = []
    for shared, comparisons in (regime_b or {}).items():
        for comparison in comparisons.values():
            if len(comparison.get("paired_folds") or []) >= 2 and "not_compared" not in comparison:
                out.append((shared, next(v for v in comparison["runs"] if v != "shared"), comparison))
    return out


def coupling_figure(regime_b: dict, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """Regime B: one row per comparison, one panel per metric; per fold, shared and the other variant joined.

    A line that rises to the right means the other variant did worse than shared on that fold (lower is
    better). The panel title gives the paired difference (other - shared): mean ± sample std, d_z, and the
    Wilcoxon p (exact; at least 0.25 with 3 folds).
    """
    rows = paired_comparisons(regime_b)
    with rc_context(STYLE):
        fig = Figure(figsize=(7.0, 2.5 * len(rows)))
        axes = fig.subplots(len(rows), len(FIGURE_METRICS), squeeze=False)
        for ax_row, (shared, other, comparison) in zip(axes, rows, strict=True):
            c = parse_run(shared)
            colour = COLOURS.get(c["prediction"], "grey")
            for ax, (metric, title) in zip(ax_row, [(m.name, m.label) for m in FIGURE_METRICS], strict=True):
                result = comparison.get(metric) or {}
                a = (result.get("shared") or {}).get("per_fold") or {}
                b = (result.get(other) or {}).get("per_fold") or {}
                folds = [int(f) for f in result.get("paired_folds") or []]
                for i, fold in enumerate(folds):
                    ya, yb = as_float(a.get(str(fold), a.get(fold))), as_float(b.get(str(fold), b.get(fold)))
                    ax.plot(
                        [0, 1],
                        [ya, yb],
                        color=colour,
                        ls=LINESTYLES[i % len(LINESTYLES)],
                        marker=MARKERS[i % len(MARKERS)],
                        ms=4,
                        lw=1.0,
                        label=f"fold {fold}",
                    )
                    ax.annotate(f"f{fold}", (1, yb), xytext=(4, 0), textcoords="offset points", va="center", fontsize=6)
                if len(folds) < 2:
                    why = f"{len(folds)} paired fold{'' if len(folds) == 1 else 's'}: not compared"
                    ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", fontsize=7, color="grey")
                    if not folds:
                        ax.set_yticks([])
                ax.set_xticks([0, 1], ["shared", other.replace("_", " ")])
                ax.set_xlim(-0.3, 1.35)
                ax.set_title(f"{title}\n{_difference_label(result)}", fontsize=7)
                if len(folds) > 0 and metric == FIGURE_METRICS[0].name:
                    ax.legend(frameon=False, fontsize=6, loc="best")
            ax_row[0].set_ylabel(f"{PRED_TEX.get(c['prediction'], c['prediction'])} p{c['p']:g} sc{c['sc']:g}")
        fig.suptitle("Paired by fold (lower is better; Δ = other variant − shared, > 0: shared better)", fontsize=8)
        fig.tight_layout()
        return save(fig, Path(out_dir), "coupling_by_fold", dpi)


def _difference_label(result: dict) -> str:
    difference = result.get("difference") or {}
    mean, sd = as_float(difference.get("mean")), as_float(difference.get("sd"))
    if not np.isfinite(mean) or (result.get("n_pairs") or 0) < 2:
        return "Δ n/a\n"
    text = f"Δ {mean:+.3g}" + ("" if not np.isfinite(sd) else f" ± {sd:.2g}")
    dz, p = as_float(result.get("d_z")), as_float(result.get("wilcoxon_p"))
    text += "\n$d_z$ n/a" if not np.isfinite(dz) else f"\n$d_z$ {dz:.2f}"
    return text + (", Wilcoxon p n/a" if not np.isfinite(p) else f", Wilcoxon p {p:.2f}")


# Utility arms (summary.json `utility`): the real-only reference in grey, then Paul Tol's vibrant blue and magenta,
# apart from the prediction-type colours.
UTILITY_ARMS = [
    ("real", "real only", "#777777"),
    ("real+syn", "real + synthetic", "#0077BB"),
    ("syn", "synthetic only", "#EE3377"),
]
UTILITY_TITLE = "Segmenter Dice on real test lesion slices (higher is better)"


def utility_seeds(utility: dict | None) -> dict[int, dict[str, dict[str, list[float]]]]:
    """{fold: {run: {arm: Dice per seed}}}; a run's `real` arm is its fold's real-only arm, repeated per run so
    each group shows its own reference. A null (undefined) Dice has no point: only defined values are drawn."""
    utility = utility or {}
    real = {parse_fold_key(key): arm for key, arm in (utility.get("real") or {}).items()}
    out: dict[int, dict[str, dict[str, list[float]]]] = {}
    for key, arms in (utility.get("runs") or {}).items():
        run, fold = parse_run_fold_key(key)
        by_arm = {"real": real.get(fold), **arms}
        out.setdefault(fold, {})[run] = {arm: _seed_dice(by_arm.get(arm)) for arm, _, _ in UTILITY_ARMS}
    return out


def _seed_dice(arm: dict | None) -> list[float]:
    values = [as_float(s.get(DICE_METRIC)) for s in (arm or {}).get("per_seed") or []]
    return [v for v in values if np.isfinite(v)]


def utility_figure(utility: dict | None, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """Per fold, one group per run (config order), within it the real-only, real + synthetic and synthetic-only
    arms: each seed a point (jittered sideways, by a fixed seed), the mean over seeds a bar.

    Without a utility section (the stage did not run, or an older summary) the figure says so, so the figure
    set and the report are the same with or without the stage.
    """
    seeds = utility_seeds(utility)
    if not seeds:
        why = "has no utility section" if not utility else "has no run in its utility section"
        return message_figure(
            f"The downstream utility stage did not run:\nsummary.json {why}.", "utility", UTILITY_TITLE, out_dir, dpi
        )
    folds = sorted(seeds)
    most = max(len(runs) for runs in seeds.values())
    jitter = np.random.default_rng(0)  # where the points sit sideways only; the same picture every time
    with rc_context(STYLE):
        fig = Figure(figsize=(max(3.6, 0.8 * most + 2.2), 2.3 * len(folds) + 0.3))
        axes = fig.subplots(len(folds), 1, squeeze=False, sharey=True)[:, 0]
        for ax, fold in zip(axes, folds, strict=True):
            runs = config_order(seeds[fold])
            for x, run in enumerate(runs):
                for offset, (arm, _, colour) in zip((-0.27, 0.0, 0.27), UTILITY_ARMS, strict=True):
                    _seed_points(ax, x + offset, seeds[fold][run][arm], colour, jitter)
            labels = [f"{PRED_TEX.get(parse_run(r)['prediction'], '')} {short(r)}" for r in runs]
            ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right")
            ax.set_xlim(-0.6, most - 0.4)  # the same group width in every panel
            ax.set(ylabel="Dice (lesion slices)", title=f"fold {fold}")
        axes[0].set_ylim(bottom=0)
        handles = [Line2D([], [], color=c, marker="o", ms=4, ls="", label=label) for _, label, c in UTILITY_ARMS]
        handles.append(Line2D([], [], color="black", lw=1.6, label="mean over seeds"))
        axes[0].legend(handles=handles, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.suptitle(UTILITY_TITLE, fontsize=9)
        fig.tight_layout()
        return save(fig, Path(out_dir), "utility", dpi)


def _seed_points(ax, centre: float, values: list[float], colour: str, jitter: np.random.Generator) -> None:
    """One point per seed around `centre` and a bar at their mean; n/a where no seed has a defined Dice."""
    if not values:
        ax.text(centre, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center", fontsize=6, color="grey")
        return
    ax.scatter(centre + jitter.uniform(-0.06, 0.06, len(values)), values, s=10, color=colour, lw=0, zorder=3)
    ax.plot([centre - 0.11, centre + 0.11], [np.mean(values)] * 2, color=colour, lw=1.6, zorder=4)


def message_figure(message: str, stem: str, title: str, out_dir, dpi: int = DEFAULT_DPI) -> list[Path]:
    """A figure that cannot be drawn from the metrics still exists (the workflow declares it): it says why."""
    with rc_context(STYLE):
        fig = Figure(figsize=(4.5, 1.4))
        ax = fig.subplots()
        ax.set_axis_off()
        ax.text(0.5, 0.5, message, transform=ax.transAxes, ha="center", va="center", color="grey")
        fig.suptitle(title, fontsize=9)
        return save(fig, Path(out_dir), stem, dpi)


def draw_figures(
    files: AggregatedFiles | Mapping[str, str | PathLike], out_dir: str | PathLike, dpi: int = DEFAULT_DPI
) -> list[Path]:
    """Every figure, from the aggregated metrics files alone (AggregatedFiles, or a mapping with its keys such as
    rule figures' inputs); coupling_by_fold only when summary.json has Regime B; utility always (a message
    figure when summary.json has no utility section)."""
    files = files if isinstance(files, AggregatedFiles) else AggregatedFiles.from_mapping(files)
    out_dir = Path(out_dir)
    summary = read_json(files.summary)
    regime_b = summary.get("regime_b")
    return (
        similarity_figure(files.table, files.summary, out_dir, dpi)
        + per_zbin_figure(read_table(files.per_zbin), out_dir, dpi)
        + morphology_figure(read_table(files.morphology), out_dir, dpi)
        + tau_sensitivity_figure(read_table(files.tau), out_dir, dpi)
        + lesion_feature_figure(read_table(files.lesions), out_dir, dpi)
        + training_figure(read_table(files.curves), out_dir, dpi)
        + (coupling_figure(regime_b, out_dir, dpi) if paired_comparisons(regime_b) else [])
        + utility_figure(summary.get("utility"), out_dir, dpi)
    )
