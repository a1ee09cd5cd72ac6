"""The copy-the-input reference beside the validation mask Dice (issue #30), with known answers.

At t = 100 the x0 estimate of an epsilon or v network is mostly its noisy input, which still holds the true
mask: input_dice_t<t> is what that input alone scores, so the mask Dice is read against it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_run_config

from slimdiff.training.module import DiffusionModule, pooled_dice

DATA_INFO = {"z_bins": 4, "z_range": [0, 3], "image_size": [32, 32]}


class _Answer(torch.nn.Module):
    """A 'network' that returns a fixed output."""

    def __init__(self, answer: torch.Tensor):
        super().__init__()
        self.answer = answer

    def forward(self, x_t, t, tokens, x0_sc=None):
        return self.answer


def _slices(n: int = 8) -> torch.Tensor:
    x0 = -torch.ones(n, 2, 32, 32)
    x0[:, 1, 8:16, 8:16] = 1  # a 64 px lesion on every slice
    return x0


def _dice(module, x0, eps, answer):
    module.net = _Answer(answer)
    module.on_validation_epoch_start()
    module._count_mask_overlap(x0, torch.zeros(len(x0), dtype=torch.long), eps)
    estimate = {t: pooled_dice(c) for t, c in module._dice_counts.items()}
    given = {t: pooled_dice(c) for t, c in module._input_dice_counts.items()}
    return estimate, given


@pytest.mark.parametrize("prediction", ["epsilon", "x0", "v"])
def test_input_dice_is_one_at_small_t_and_chance_at_large_t(prediction):
    cfg = tiny_run_config(mask_dice_timesteps=[0, 999])
    cfg["diffusion"]["prediction"] = prediction
    module = DiffusionModule(cfg, DATA_INFO)
    x0 = _slices()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    # the network's answer does not change the input's score: "no lesion anywhere" in x0 terms
    _, given = _dice(module, x0, eps, torch.zeros_like(x0) if prediction != "x0" else -torch.ones_like(x0))
    assert given[0] == pytest.approx(1.0, abs=1e-6)  # alpha_bar_0 ~ 1: the input is the clean mask
    lesion, pixels = 64, 32 * 32
    chance = 2 * 0.5 * lesion / (0.5 * pixels + lesion)  # x_999 ~ eps: half of all pixels above 0, at random
    assert given[999] == pytest.approx(chance, abs=0.03) and given[999] < 0.2


def test_epsilon_network_answering_zero_scores_exactly_the_input():
    """eps_hat = 0 makes the x0 estimate the rescaled input: the two Dice agree at every t (copying is no skill)."""
    cfg = tiny_run_config(mask_dice_timesteps=[10, 100, 500])
    cfg["diffusion"]["prediction"] = "epsilon"
    module = DiffusionModule(cfg, DATA_INFO)
    x0 = _slices()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(1))
    estimate, given = _dice(module, x0, eps, torch.zeros_like(x0))
    assert estimate == pytest.approx(given)
    assert given[10] >= given[100] > given[500]  # the input loses the mask as t grows
    assert given[100] > 0.9  # what the issue saw: ~1 at t = 100 without any learning


def test_oracle_beats_the_input_where_the_input_is_noisy():
    cfg = tiny_run_config(mask_dice_timesteps=[500])
    module = DiffusionModule(cfg, DATA_INFO)  # x0 prediction
    x0 = _slices()
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(2))
    estimate, given = _dice(module, x0, eps, x0.clone())
    assert estimate[500] == 1.0 and given[500] < 0.9


def test_log_columns_put_the_input_dice_last_and_pad_old_rows(tmp_path):
    from slimdiff.training.runner import LOG_COLUMNS, EpochLog

    log = EpochLog(tmp_path / "log.csv", [100, 500], ("image", "mask"))
    assert log.columns == [
        *LOG_COLUMNS,
        "mask_dice_t100",
        "mask_dice_t500",
        "log_var_image",
        "log_var_mask",
        "input_dice_t100",
        "input_dice_t500",
    ]
    old_row = [0, 10, 1.0, 0.9, 1e-4, 1.5, 0.2, 0.1, -0.5, -0.4]  # a checkpoint from before the input columns
    log.load_state_dict({"rows": [old_row]})
    log.write()
    rows = pd.read_csv(tmp_path / "log.csv")
    assert rows.loc[0, "log_var_mask"] == -0.4 and rows.loc[0, "mask_dice_t500"] == 0.1
    assert math.isnan(rows.loc[0, "input_dice_t100"]) and math.isnan(rows.loc[0, "input_dice_t500"])


def _curves(with_input: bool) -> pd.DataFrame:
    frames = []
    for run in ("x0_lp1.5_sc0.5", "epsilon_lp1.5_sc0.5"):
        f = pd.DataFrame({"run": run, "fold": 0, "epoch": range(4), "val_loss": np.linspace(1, 0.2, 4)})
        f["mask_dice_t100"] = np.linspace(0.5, 0.9, 4)
        if with_input:
            f["input_dice_t100"] = 0.95
        frames.append(f)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("with_input", [True, False])
def test_training_figure_draws_the_input_reference(tmp_path, monkeypatch, with_input):
    from slimdiff.figures import plots

    lines, save = {}, plots.save

    def spy(fig, out_dir, stem, dpi):
        lines[stem] = [[(ln.get_linestyle(), ln.get_label()) for ln in ax.get_lines()] for ax in fig.axes]
        return save(fig, out_dir, stem, 72)

    monkeypatch.setattr(plots, "save", spy)
    plots.training_figure(_curves(with_input), tmp_path, dpi=72)
    loss_panel, dice_panel = lines["training_curves"]
    assert len(loss_panel) == 2
    assert len(dice_panel) == (2 + 2 + 1 if with_input else 2)  # a reference per run, one legend entry
    assert ("noisy input alone" in " ".join(label for _, label in dice_panel)) == with_input
    assert (tmp_path / "training_curves.png").stat().st_size > 0


def test_loss_png_of_a_run_draws_the_input_reference(tmp_path):
    from slimdiff.training.runner import plot_losses

    rows = _curves(True)
    rows = rows[rows["run"] == "x0_lp1.5_sc0.5"].drop(columns=["run", "fold"]).assign(train_loss=1.0)
    rows.to_csv(tmp_path / "log.csv", index=False)
    plot_losses(tmp_path / "log.csv", tmp_path / "loss.png", "x0")
    assert (tmp_path / "loss.png").stat().st_size > 0
