"""Downstream utility: lesion-wise counts, the arms' data, a segmenter that learns bright disks, and the CLI."""

import math

import numpy as np
import pytest
import torch
import yaml

from slimdiff.cli import utility as utility_cli
from slimdiff.config import ConfigError
from slimdiff.io import read_json
from slimdiff.metrics.stats import paired_comparison
from slimdiff.utility import segmenter
from slimdiff.utility.lesionwise import false_positive_components, lesion_sensitivity
from slimdiff.utility.segmenter import (
    evaluate_segmenter,
    mix_real_and_synthetic,
    run_arms,
    train_arm,
    utility_settings,
)

# A segmenter small enough for a second of CPU per arm and seed at 32x32, enough to learn disks.
TINY = utility_settings(
    {"utility": {"steps": 60, "batch_size": 8, "lr": 1e-2, "channels": [4, 8, 16], "seeds": [0, 1]}}
)


def blank(n=1, size=12) -> np.ndarray:
    return np.zeros((n, size, size), bool)


# --- lesion-wise counting -------------------------------------------------------------------------------------


def test_one_of_two_lesions_found():
    truth, pred = blank(), blank()
    truth[0, 1:4, 1:4] = True  # 9 px
    truth[0, 7:10, 7:10] = True  # 9 px, separate
    pred[0, 2:4, 2:4] = True  # inside the first lesion only
    assert lesion_sensitivity(truth, pred, min_px=5) == (1, 2)


def test_a_single_overlapping_pixel_finds_a_lesion():
    truth, pred = blank(), blank()
    truth[0, 1:4, 1:4] = True
    pred[0, 3, 3] = True  # the lesion's corner pixel
    assert lesion_sensitivity(truth, pred, min_px=5) == (1, 1)
    pred[0, 3, 3], pred[0, 4, 4] = False, True  # diagonal neighbour: no shared pixel, not found
    assert lesion_sensitivity(truth, pred, min_px=5) == (0, 1)


def test_lesions_below_min_px_are_not_counted():
    truth, pred = blank(2), blank(2)
    truth[0, 1:3, 1:3] = True  # 4 px: below min_px 5
    truth[1, 5:8, 5:8] = True  # 9 px
    pred[0] = True
    assert lesion_sensitivity(truth, pred, min_px=5) == (0, 1)
    assert lesion_sensitivity(truth, pred, min_px=4) == (1, 2)


def test_false_positive_components_on_control_slices():
    pred = blank(3)
    pred[0, 1:3, 1:4] = True  # 6 px
    pred[0, 6:9, 6:8] = True  # 6 px
    pred[1, 0, 0:3] = True  # 3 px: too small
    pred[2, 2:5, 2:4] = True  # 6 px ...
    pred[2, 5:8, 4:6] = True  # ... touching only at a corner: a separate 4-connected component
    assert false_positive_components(pred, min_px=5) == 4
    assert false_positive_components(blank(2), min_px=5) == 0
    assert false_positive_components(pred[0], min_px=5) == 2  # a single (H, W) mask


# --- the arms' data and settings ------------------------------------------------------------------------------


def pairs(n, value, size=8):
    return np.full((n, size, size), value, np.float32), np.full((n, size, size), -1.0, np.float32)


def test_mix_draws_ratio_times_real_pairs_deterministically():
    real, syn = pairs(10, 0.0), (np.arange(6, dtype=np.float32)[:, None, None] * np.ones((6, 8, 8)), pairs(6, 0)[1])
    for ratio, n_syn in ((1.0, 10), (0.5, 5), (0.24, 2), (0.0, 0)):
        images, masks = mix_real_and_synthetic(real, syn, ratio, seed=3)
        assert len(images) == len(masks) == 10 + n_syn
        assert (images[:10] == 0).all()  # the real pairs first, unchanged
    drawn = mix_real_and_synthetic(real, syn, 0.5, seed=3)[0][10:, 0, 0]
    assert len(set(drawn)) == 5  # enough synthetic pairs: without replacement
    assert np.array_equal(drawn, mix_real_and_synthetic(real, syn, 0.5, seed=3)[0][10:, 0, 0])
    draws = {tuple(mix_real_and_synthetic(real, syn, 0.5, seed=s)[0][10:, 0, 0]) for s in range(5)}
    assert len(draws) > 1  # the seed matters


def test_mix_without_synthetic_pairs_is_an_input_error():
    with pytest.raises(segmenter.UtilityDataError, match="none"):
        mix_real_and_synthetic(pairs(4, 0.0), pairs(0, 0.0), 1.0, seed=0)


def test_settings_overlay_the_defaults_and_reject_typos():
    assert utility_settings({})["steps"] == segmenter.UTILITY_DEFAULTS["steps"]
    assert utility_settings({"utility": {"steps": 7}})["steps"] == 7
    with pytest.raises(ConfigError, match="stpes"):
        utility_settings({"utility": {"stpes": 7}})


def test_slices_the_strides_cannot_halve_are_a_config_error():
    images, masks = pairs(2, 0.0, size=10)
    with pytest.raises(ConfigError, match="not divisible"):
        train_arm(images, masks, dict(TINY, strides=[2, 2]), seed=0)


# --- training and evaluation on bright disks ------------------------------------------------------------------


def disks(n: int, seed: int, size: int = 32, lesion_share: float = 0.5) -> dict:
    """Noisy dark slices; about lesion_share of them carry a bright disk, which is the lesion."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.clip(rng.normal(-0.4, 0.15, (n, size, size)), -1, 1).astype(np.float32)
    masks = np.full((n, size, size), -1.0, np.float32)
    classes = (rng.random(n) < lesion_share).astype(int)
    for i in np.flatnonzero(classes):
        cy, cx = rng.uniform(6, size - 6, 2)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= rng.uniform(2.5, 4.0) ** 2
        images[i][disk] += 0.9
        masks[i][disk] = 1.0
    return {"images": images, "masks": masks, "class": classes}


@pytest.fixture(scope="module")
def disk_data() -> dict:
    real, syn, test = disks(48, seed=1), disks(48, seed=2), disks(40, seed=3)
    syn["masks"] = syn["masks"] * 0.8 + 0.05  # synthetic masks are continuous; mask > tau still finds the disks
    return {"real": real, "syn": syn, "test": test}


@pytest.fixture(scope="module")
def arm_results(disk_data) -> dict:
    real = (disk_data["real"]["images"], disk_data["real"]["masks"])
    syn = (disk_data["syn"]["images"], disk_data["syn"]["masks"])
    arms = {"real": real, "real+syn": mix_real_and_synthetic(real, syn, 1.0, seed=0), "syn": syn}
    return run_arms(arms, disk_data["test"], TINY, tau=0.0, seeds=TINY["seeds"])


@pytest.mark.slow
@pytest.mark.xdist_group("utility_arms")  # one worker trains the module-scoped arms once
def test_every_arm_learns_the_disks(arm_results, disk_data):
    n_lesion, n_control = int(disk_data["test"]["class"].sum()), int((disk_data["test"]["class"] == 0).sum())
    assert set(arm_results) == {"real", "real+syn", "syn"}
    for arm, result in arm_results.items():
        assert [r["seed"] for r in result["per_seed"]] == [0, 1]
        for r in result["per_seed"]:
            assert r["dice_lesion_slices"] > 0.5, (arm, r)
            assert r["lesions_found"] >= 0.8 * r["lesions_total"] and r["lesions_total"] == n_lesion
            assert r["n_test_lesion_slices"] == n_lesion and r["n_test_control_slices"] == n_control
            assert r["fp_components_per_control_slice"] < 0.5
        dice = [r["dice_lesion_slices"] for r in result["per_seed"]]
        summary = result["summary"]["dice_lesion_slices"]
        assert summary["mean"] == pytest.approx(np.mean(dice)) and summary["std"] == pytest.approx(np.std(dice, ddof=1))


@pytest.mark.xdist_group("utility_arms")
@pytest.mark.slow
def test_same_seed_same_segmenter_other_seed_another(arm_results, disk_data):
    real = disk_data["real"]
    first, again, other = (train_arm(real["images"], real["masks"], TINY, seed=s) for s in (0, 0, 1))

    def same_weights(x, y) -> bool:
        return all(torch.equal(a, b) for a, b in zip(x.state_dict().values(), y.state_dict().values(), strict=True))

    assert same_weights(first, again) and not same_weights(first, other)
    test = disk_data["test"]
    metrics = evaluate_segmenter(again, test["images"], test["masks"], test["class"], TINY, 0.0)
    assert metrics == {k: v for k, v in arm_results["real"]["per_seed"][0].items() if k != "seed"}


@pytest.mark.xdist_group("utility_arms")
def test_undefined_metrics_say_why(disk_data):
    net = segmenter.build_segmenter(TINY).eval()
    test = disk_data["test"]
    lesion_only = test["class"] == 1
    out = evaluate_segmenter(
        net, test["images"][lesion_only], test["masks"][lesion_only], test["class"][lesion_only], TINY, 0.0
    )
    assert (
        math.isnan(out["fp_components_per_control_slice"])
        and "control" in out["null_reasons"]["fp_components_per_control_slice"]
    )
    controls = ~lesion_only
    out = evaluate_segmenter(net, test["images"][controls], test["masks"][controls], test["class"][controls], TINY, 0.0)
    assert math.isnan(out["dice_lesion_slices"]) and math.isnan(out["lesion_sensitivity"])
    assert out["lesions_total"] == 0 and set(out["null_reasons"]) == {"dice_lesion_slices", "lesion_sensitivity"}


# --- paired comparison ----------------------------------------------------------------------------------------


def test_paired_comparison_on_known_numbers():
    a = {(0, 0): 0.1, (0, 1): 0.2, (0, 2): 0.3, (1, 0): 0.5}
    b = {(0, 0): 0.2, (0, 1): 0.4, (0, 2): 0.6, (2, 0): 0.9}  # (1, 0) and (2, 0) have no partner
    out = paired_comparison(a, b)
    assert out["n_pairs"] == 3 and out["mean_difference"] == pytest.approx(0.2)
    assert out["wilcoxon_p"] == pytest.approx(0.25)  # exact two-sided p of 3 positive differences
    assert "null_reasons" not in out


def test_paired_comparison_undefined_cases():
    one = paired_comparison({(0, 0): 0.1}, {(0, 0): 0.3})
    assert one["n_pairs"] == 1 and one["mean_difference"] == pytest.approx(0.2) and math.isnan(one["wilcoxon_p"])
    assert "fewer than 2" in one["null_reasons"]["wilcoxon_p"]
    same = paired_comparison({(0, 0): 0.1, (0, 1): 0.2}, {(0, 0): 0.1, (0, 1): 0.2})
    assert same["mean_difference"] == 0.0 and same["null_reasons"]["wilcoxon_p"] == "all differences are zero"
    nan = paired_comparison({(0, 0): math.nan, (0, 1): 0.2}, {(0, 0): 0.1, (0, 1): 0.2})
    assert nan["n_pairs"] == 1  # a pair with an undefined value is dropped


# --- the command ----------------------------------------------------------------------------------------------


def write_run_samples(folder, images, masks) -> None:
    """Two replicas of 'generated' samples in the generation's file format."""
    from slimdiff.generation.outputs import write_samples

    n = len(images)
    for replica in (0, 1):
        result = {
            "images": images,
            "masks": masks,
            "z_bin": np.zeros(n, int),
            "class": (masks > 0).any(axis=(1, 2)).astype(int),
            "token": np.zeros(n, int),
            "k": np.arange(n),
            "seed": np.arange(n),
        }
        write_samples(folder / f"replica{replica}" / "zbin00.npz", result, {"run": "fake", "replica": replica})


@pytest.fixture
def quick_config(tmp_path) -> list[str]:
    """--config with a utility section small enough for a test (the command reads it like a rule does)."""
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"utility": dict(TINY, steps=3, seeds=[0])}))
    return ["--config", str(path)]


def test_cli_end_to_end_on_the_tiny_cache(tiny_cache, tmp_path, quick_config):
    from slimdiff.metrics.evaluate import real_split

    train = real_split(tiny_cache, 0, "train")
    write_run_samples(tmp_path / "samples", train["images"][:10], train["masks"][:10])
    cache = ["--cache", str(tiny_cache), "--fold", "0", "--device", "cpu", *quick_config]
    assert utility_cli.main(["real", *cache, "--out", str(tmp_path / "real.json")]) == 0
    real = read_json(tmp_path / "real.json")
    assert real["arms"] == ["real"] and real["seeds"] == [0] and real["settings"]["steps"] == 3
    lesion_slices = (train["masks"] > 0).any(axis=(1, 2))
    assert real["training_slices"]["real"] == {
        "real": len(lesion_slices),
        "synthetic": 0,
        "lesion_slices": lesion_slices.sum(),
    }
    assert real["tau"] == 0.0 and "torch" in real["versions"] and real["results"]["real"]["per_seed"][0]["seed"] == 0

    out = tmp_path / "run.json"
    args = ["run", *cache, "--samples", str(tmp_path / "samples"), "--run", "fake", "--out", str(out)]
    assert utility_cli.main(args) == 0
    run = read_json(out)
    assert run["run"] == "fake" and run["arms"] == ["real+syn", "syn"] and len(run["samples"]) == 2
    n_real = len(train["images"])
    assert run["training_slices"]["real+syn"]["real"] == n_real
    assert run["training_slices"]["real+syn"]["synthetic"] == n_real  # syn_ratio 1.0
    assert run["training_slices"]["syn"] == {"real": 0, "synthetic": 20, "lesion_slices": 2 * lesion_slices[:10].sum()}
    summary = run["results"]["syn"]["summary"]["dice_lesion_slices"]
    assert summary["std"] is None and summary["null_reasons"]["std"] == "fewer than 2 seeds"


def test_cli_input_errors_name_the_problem(tiny_cache, tmp_path, capsys, quick_config):
    missing = tmp_path / "no_samples"
    base = ["--cache", str(tiny_cache), "--device", "cpu", "--out", str(tmp_path / "out.json"), *quick_config]
    assert utility_cli.main(["run", *base, "--samples", str(missing), "--run", "x"]) == 2
    assert f"slimdiff-utility: error: {missing}: no such file or directory" in capsys.readouterr().err
    assert utility_cli.main(["real", *base, "--fold", "7"]) == 2
    assert "no fold 7" in capsys.readouterr().err
    no_cache = tmp_path / "no_cache"
    assert utility_cli.main(["real", "--cache", str(no_cache), "--out", str(tmp_path / "o.json")]) == 2
    assert str(no_cache) in capsys.readouterr().err
    (tmp_path / "wrong").mkdir()
    write_run_samples(tmp_path / "wrong", *pairs(2, 0.0, size=16))
    assert utility_cli.main(["run", *base, "--samples", str(tmp_path / "wrong"), "--run", "x"]) == 2
    assert "synthetic slices are (16, 16)" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def _report(tmp_path, name: str, run: str, fold: int, arms: dict[str, list[float]]) -> str:
    """A utility.json as the stage writes it, with the given Dice per seed for each arm."""
    from slimdiff.io import write_json

    results = {
        arm: {"per_seed": [{"seed": s, "dice_lesion_slices": d} for s, d in enumerate(dice)], "summary": {}}
        for arm, dice in arms.items()
    }
    path = tmp_path / f"{name}.json"
    write_json(path, {"run": run, "fold": fold, "results": results, "settings": {"steps": 3}, "tau": 0.0})
    return str(path)


def test_summary_pairs_each_run_with_the_real_arm_of_the_same_fold_and_seed(tmp_path):
    from slimdiff.utility.summary import utility_section

    real = [_report(tmp_path, f"real{f}", "real", f, {"real": [0.2, 0.3]}) for f in (0, 1)]
    runs = [
        _report(tmp_path, "a0", "x0", 0, {"real+syn": [0.3, 0.4], "syn": [0.1, float("nan")]}),
        _report(tmp_path, "a1", "x0", 1, {"real+syn": [0.25, 0.3], "syn": [0.0, 0.1]}),
    ]
    section = utility_section(runs, real)
    assert set(section["real"]) == {"fold0", "fold1"} and set(section["runs"]) == {"x0/fold0", "x0/fold1"}
    both = section["comparison"]["x0"]["real+syn"]
    assert both["n_pairs"] == 4 and both["mean_difference"] == pytest.approx((0.1 + 0.1 + 0.05 + 0.0) / 4)
    syn = section["comparison"]["x0"]["syn"]  # the undefined seed (NaN, written as null) drops its pair
    assert syn["n_pairs"] == 3 and syn["mean_difference"] == pytest.approx((-0.1 - 0.2 - 0.2) / 3)
    assert section["settings"] == {"steps": 3} and section["paired_metric"] == "dice_lesion_slices"


@pytest.mark.slow
def test_the_utility_switch(tmp_path):
    """utility.enabled off: the dry run of the tiny workflow plans no segmenter jobs and everything else as
    before; the aggregation script then writes no utility section (slimdiff.metrics.evaluate.aggregate with
    utility=None, the table without Dice columns: tests/test_figures.py)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from conftest import copy_project

    proj = copy_project(tmp_path / "proj")
    cfg_path = proj / "config" / "config.yaml"
    cfg = yaml.safe_load(cfg_path.read_text())

    def planned() -> dict[str, int]:
        cmd = [str(Path(sys.executable).parent / "snakemake"), "-n", "--quiet", "rules"]
        proc = subprocess.run(cmd, cwd=proj, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", proc.stdout + proc.stderr, re.M)}

    on = planned()
    cfg["utility"] = {**cfg.get("utility", {}), "enabled": False}
    cfg_path.write_text(yaml.safe_dump(cfg))
    off = planned()
    assert on["utility"] >= 1 and on["utility_real"] >= 1
    assert "utility" not in off and "utility_real" not in off
    assert {k: v for k, v in on.items() if not k.startswith("utility") and k != "total"} == {
        k: v for k, v in off.items() if k != "total"
    }
