"""Training end to end on a tiny cache: outputs, model.pt, determinism, exact resume after a kill, bad checkpoints."""

import copy
import shutil
import signal
import subprocess
import sys

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import tiny_run_config

from slimdiff.experiments import expand_runs, run_name
from slimdiff.model.file import ModelFileError, load_denoiser, read_model_file, save_model, weight_kind
from slimdiff.training.runner import train_run


@pytest.fixture(scope="module")
def trained(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "train"
    train_run(tiny_cache, out, tiny_run_config(), fold=0, device="cpu", run_name="x0_lp1.5_sc0.5")
    return out


@pytest.mark.slow
@pytest.mark.xdist_group("trained_run")  # one worker trains the module-scoped run once
def test_outputs_of_a_run(trained):
    for name in ("model.pt", "last.ckpt", "log.csv", "loss.png", "config.yaml", "versions.json"):
        assert (trained / name).stat().st_size > 0, name
    log = pd.read_csv(trained / "log.csv")
    assert log["epoch"].tolist() == [0, 1]
    assert (log["step"].diff().dropna() > 0).all()
    assert log[["train_loss", "val_loss"]].notna().all().all()
    dice = log[["mask_dice_t100", "mask_dice_t500", "input_dice_t100", "input_dice_t500"]]  # the schema's default t
    assert ((dice >= 0) & (dice <= 1)).all().all()
    cfg = yaml.safe_load((trained / "config.yaml").read_text())
    assert cfg["run"] == "x0_lp1.5_sc0.5" and cfg["diffusion"]["prediction"] == "x0"


@pytest.mark.slow
@pytest.mark.xdist_group("trained_run")
def test_model_pt_is_weights_only_and_rebuilds(trained):
    payload = torch.load(trained / "model.pt", weights_only=True)
    assert payload["format"] == "slimdiff-model"
    assert payload["data_info"]["z_bins"] == 4 and payload["provenance"]["epoch"] in (0, 1)
    assert payload["weights"] == weight_kind(payload) == "ema"  # what the file says about its weights
    net, diffusion, _ = load_denoiser(trained / "model.pt")
    assert diffusion.prediction == "x0"
    x = torch.randn(2, 2, 32, 32)
    out = net(x, torch.tensor([5, 900]), torch.tensor([0, 5]), torch.zeros_like(x))
    assert out.shape == (2, 2, 32, 32) and torch.isfinite(out).all()


@pytest.mark.slow
def test_model_pt_holds_the_ema_recurrence_of_the_raw_weights(tiny_cache, tmp_path, monkeypatch):
    """model.pt = e_n, where e_1 = w_1 and e_k = d e_(k-1) + (1 - d) w_k over the raw weights after each step."""
    from slimdiff.training import runner

    raw = []

    class Recording(runner.EMAWeightAveraging):  # the callback train_run uses, also noting the raw weights
        def on_train_batch_end(self, trainer, pl_module, *args, **kwargs):
            super().on_train_batch_end(trainer, pl_module, *args, **kwargs)
            raw.append(pl_module.net.state_dict()["unet.conv_in.conv.weight"].detach().clone())

    monkeypatch.setattr(runner, "EMAWeightAveraging", Recording)
    decay = 0.8
    train_run(tiny_cache, tmp_path / "r", tiny_run_config(max_epochs=1, ema_decay=decay), fold=0, device="cpu")
    ema = raw[0]
    for w in raw[1:]:
        ema = decay * ema + (1 - decay) * w
    exported = read_model_file(tmp_path / "r" / "model.pt")["state_dict"]["unet.conv_in.conv.weight"]
    assert len(raw) >= 3
    assert torch.allclose(exported, ema, atol=1e-6)
    assert not torch.allclose(exported, raw[-1], atol=1e-4)  # and not the raw weights


@pytest.mark.xdist_group("trained_run")
@pytest.mark.slow
def test_bf16_mixed_training_on_the_cpu(tiny_cache, tmp_path):
    """training.precision: bf16-mixed runs on a CPU as on CUDA (the pilot's setting): bf16 autocast in the
    steps, float32 weights in model.pt, the precision in its provenance."""
    seen = []
    original = torch.nn.Conv2d.forward

    def recording(self, x):
        out = original(self, x)
        seen.append(out.dtype)
        return out

    cfg = tiny_run_config(max_epochs=1, precision="bf16-mixed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Conv2d, "forward", recording)
        model_pt = train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu", run_name="x0_lp1.5_sc0.5")
    assert torch.bfloat16 in seen
    payload = torch.load(model_pt, weights_only=True)
    assert payload["provenance"]["precision"] == "bf16-mixed"
    assert all(v.dtype == torch.float32 for v in payload["state_dict"].values() if v.is_floating_point())
    assert all(torch.isfinite(v).all() for v in payload["state_dict"].values() if v.is_floating_point())
    assert pd.read_csv(tmp_path / "log.csv")[["train_loss", "val_loss"]].notna().all().all()


@pytest.mark.slow
def test_same_seed_same_model(tiny_cache, tmp_path, trained):
    train_run(tiny_cache, tmp_path / "again", tiny_run_config(), fold=0, device="cpu", run_name="x0_lp1.5_sc0.5")
    a = read_model_file(trained / "model.pt")["state_dict"]
    b = read_model_file(tmp_path / "again" / "model.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# Resume after a kill. The reference: 3 epochs of a tiny run without interruption. A run killed anywhere and run
# again ends with the same model.pt (torch.equal on every tensor) and the same log.csv (but its wall times).


class _Killed(Exception):
    pass


def _kill(*args):
    raise _Killed


class _KillAt(pl.Callback):
    """Raises as epoch `epoch` starts: last.ckpt then holds the end of epoch `epoch` - 1."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            raise _Killed


def _with_callback(monkeypatch, callback: pl.Callback) -> None:
    """train_run's trainer with one more callback (without state: the checkpoints hold what they would)."""
    from slimdiff.training import runner

    make = runner._trainer
    monkeypatch.setattr(runner, "_trainer", lambda *args: make(*args[:-1], [*args[-1], callback]))


@pytest.fixture(scope="module")
def uninterrupted(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    train_run(tiny_cache, out, tiny_run_config(max_epochs=3), fold=0, device="cpu")
    return out


def _assert_same_run(out, reference, epochs: int = 3) -> None:
    """model.pt's tensors equal, its epoch, step and score too; log.csv equal except for the wall times."""
    ours, theirs = read_model_file(out / "model.pt"), read_model_file(reference / "model.pt")
    assert ours["state_dict"].keys() == theirs["state_dict"].keys()
    differ = [k for k in ours["state_dict"] if not torch.equal(ours["state_dict"][k], theirs["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    keys = ("epoch", "global_step", "best_val_loss")
    assert {k: ours["provenance"][k] for k in keys} == {k: theirs["provenance"][k] for k in keys}
    log, ref_log = pd.read_csv(out / "log.csv"), pd.read_csv(reference / "log.csv")
    assert log["epoch"].tolist() == list(range(epochs))
    pd.testing.assert_frame_equal(log.drop(columns="seconds"), ref_log.drop(columns="seconds"), check_exact=True)
    assert (out / "loss.png").stat().st_size > 0


def _remove_outputs(out) -> None:
    """What Snakemake does with the outputs of a failed job."""
    for name in ("model.pt", "log.csv", "loss.png"):
        (out / name).unlink(missing_ok=True)


@pytest.mark.xdist_group("uninterrupted_run")
@pytest.mark.parametrize("num_workers", [0, 1])
@pytest.mark.slow
def test_a_kill_at_an_epoch_boundary_resumes_exactly(uninterrupted, tiny_cache, tmp_path, monkeypatch, num_workers):
    """Killed as epoch 1 starts, resumed for epochs 1-2. With a worker process too (the reference has none: workers
    change nothing that is learned): a loader with workers draws an epoch's first indices when Lightning makes
    the iterator, before it calls the sampler's set_epoch."""
    cfg = tiny_run_config(max_epochs=3, num_workers=num_workers)
    with monkeypatch.context() as patch:
        _with_callback(patch, _KillAt(1))
        with pytest.raises(_Killed):
            train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu")
    assert len(pd.read_csv(tmp_path / "log.csv")) == 1
    _remove_outputs(tmp_path)
    torch.rand(7)  # the global RNG wherever: the resumed epochs do not draw from it as it stands
    train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu")
    _assert_same_run(tmp_path, uninterrupted)


# A real kill: the process SIGKILLs itself after batch 1 of epoch 2 (of 3), so last.ckpt holds the end of epoch 1.
SIGKILL_MID_EPOCH = """
import os, signal, sys
sys.path.insert(0, sys.argv[3])
from conftest import tiny_run_config
from slimdiff.training import runner

class SigkillMidEpoch(runner.pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == 2 and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)

make = runner._trainer
runner._trainer = lambda *args: make(*args[:-1], [*args[-1], SigkillMidEpoch()])
runner.train_run(sys.argv[1], sys.argv[2], tiny_run_config(max_epochs=3), fold=0, device="cpu")
"""


@pytest.mark.xdist_group("uninterrupted_run")
@pytest.mark.slow
def test_a_sigkill_mid_epoch_resumes_exactly(uninterrupted, tiny_cache, tmp_path, caplog):
    from conftest import REPO

    out = tmp_path / "train"
    args = [str(tiny_cache), str(out), str(REPO / "tests")]
    killed = subprocess.run([sys.executable, "-c", SIGKILL_MID_EPOCH, *args], capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(pd.read_csv(out / "log.csv")) == 2 and not (out / "model.pt").exists()
    _remove_outputs(out)
    caplog.set_level("INFO", logger="slimdiff.training.runner")
    train_run(tiny_cache, out, tiny_run_config(max_epochs=3), fold=0, device="cpu")
    assert "resuming from" in caplog.text
    _assert_same_run(out, uninterrupted)


@pytest.mark.xdist_group("uninterrupted_run")
@pytest.mark.slow
def test_a_kill_after_the_last_epoch_before_the_export(uninterrupted, tiny_cache, tmp_path, monkeypatch):
    """Nothing is left to train: log.csv, loss.png and model.pt come back from the checkpoints."""
    from slimdiff.training import runner

    cfg = tiny_run_config(max_epochs=3)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "_export_model", _kill)
        with pytest.raises(_Killed):
            train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu")
    last = tmp_path / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 2
    _remove_outputs(tmp_path)
    before = last.stat().st_mtime_ns
    train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu")
    assert last.stat().st_mtime_ns == before  # no epoch ran
    _assert_same_run(tmp_path, uninterrupted)


@pytest.mark.slow
def test_a_run_stopped_early_stays_stopped(tiny_cache, tmp_path):
    """With EMA decay 1 the validated (EMA) weights never move after the first step: no improvement after
    epoch 0, a stop after epoch 1 (patience 1). Run again, it trains nothing and exports the same model."""
    cfg = tiny_run_config(max_epochs=4, ema_decay=1.0, early_stopping_patience=1)
    train_run(tiny_cache, tmp_path / "a", cfg, fold=0, device="cpu")
    assert pd.read_csv(tmp_path / "a" / "log.csv")["epoch"].tolist() == [0, 1]
    shutil.copytree(tmp_path / "a", tmp_path / "b")  # a reference for the model.pt; Lightning keys paths by dir
    last = tmp_path / "a" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1  # the stop is in last.ckpt
    assert read_model_file(tmp_path / "a" / "model.pt")["provenance"]["epoch"] == 0  # the best
    before = last.stat().st_mtime_ns
    _remove_outputs(tmp_path / "a")
    train_run(tiny_cache, tmp_path / "a", cfg, fold=0, device="cpu")
    assert last.stat().st_mtime_ns == before
    _assert_same_run(tmp_path / "a", tmp_path / "b", epochs=2)


def test_epoch_sampler_order_is_a_function_of_seed_and_epoch():
    from slimdiff.training.data import EpochSampler

    def order(seed, epoch, weights=None):
        sampler = EpochSampler(20, seed, weights)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert order(3, 2) == order(3, 2) and sorted(order(3, 2)) == list(range(20))
    assert order(3, 2) != order(3, 1) and order(3, 2) != order(4, 2)
    assert order(33, 1) != order(34, 0)  # not seed + epoch
    weights = np.where(np.arange(20) < 2, 9.0, 1.0)  # 2 lesion slices weighted 18 / 2
    draws = np.array(order(3, 0, weights) + order(3, 1, weights) + order(3, 2, weights))
    assert 0.3 < (draws < 2).mean() < 0.7


def test_a_checkpoint_write_cut_short_leaves_the_old_one(tmp_path, monkeypatch):
    from slimdiff.training.runner import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1}, path)

    def cut_short(obj, f):
        open(f, "wb").write(b"PK\x03\x04")
        raise OSError("killed")

    monkeypatch.setattr(torch, "save", cut_short)
    with pytest.raises(OSError, match="killed"):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_cosine_schedule_matches_torch_for_a_fixed_length():
    from slimdiff.training.module import cosine_lr_factor

    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=3e-4)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=1e-6)
    factor = cosine_lr_factor(7, 3e-4, 1e-6)
    for epoch in range(8):  # 0..T_max; past it torch rises again, ours holds lr_min
        assert opt.param_groups[0]["lr"] == pytest.approx(3e-4 * factor(epoch), rel=1e-9, abs=1e-12)
        opt.step()
        ref.step()


@pytest.mark.xdist_group("trained_run")
@pytest.mark.slow
def test_resume_with_more_epochs_follows_the_longer_schedule(trained, tiny_cache, tmp_path):
    """Extending a finished 2-epoch run to 4: epochs 2-3 use the 4-epoch cosine, the LR never rises again."""
    from slimdiff.training.module import cosine_lr_factor

    out = tmp_path / "extended"
    shutil.copytree(trained, out)
    cfg = tiny_run_config(max_epochs=4)
    train_run(tiny_cache, out, cfg, fold=0, device="cpu", run_name="x0_lp1.5_sc0.5")
    log = pd.read_csv(out / "log.csv")
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    tr = cfg["training"]
    factor = cosine_lr_factor(4, tr["lr"], tr["lr_min"])
    assert log["lr"].iloc[2:].tolist() == pytest.approx([tr["lr"] * factor(e) for e in (2, 3)])
    assert log["lr"].iloc[2] > log["lr"].iloc[3] > tr["lr_min"]


@pytest.mark.xdist_group("trained_run")
@pytest.mark.slow
def test_resume_from_a_checkpoint_with_the_old_scheduler_state(trained, tiny_cache, tmp_path):
    """last.ckpt files written with torch's CosineAnnealingLR still resume (its T_max is dropped)."""
    out = tmp_path / "old"
    shutil.copytree(trained, out)
    ckpt = torch.load(out / "last.ckpt", weights_only=False)
    tr = tiny_run_config()["training"]
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=tr["lr"])
    old = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2, eta_min=tr["lr_min"])
    for _ in range(2):
        opt.step()
        old.step()
    ckpt["lr_schedulers"] = [old.state_dict()]
    torch.save(ckpt, out / "last.ckpt")
    train_run(tiny_cache, out, tiny_run_config(max_epochs=3), fold=0, device="cpu", run_name="x0_lp1.5_sc0.5")
    assert pd.read_csv(out / "log.csv")["epoch"].tolist() == [0, 1, 2]


@pytest.mark.slow
@pytest.mark.xdist_group("trained_run")
def test_resume_refuses_a_checkpoint_from_another_config(trained, tiny_cache):
    other = tiny_run_config()
    other["loss"]["p"] = 2.0
    with pytest.raises(ModelFileError, match=r"last.ckpt: written by a different config, differs in run_cfg.loss.p"):
        train_run(tiny_cache, trained, other, fold=0, device="cpu")


@pytest.mark.slow
@pytest.mark.xdist_group("trained_run")
def test_sampler_settings_do_not_block_a_resume(trained, tiny_cache):
    from slimdiff.training.runner import check_resumable

    stored = torch.load(trained / "last.ckpt", map_location="cpu", weights_only=False)["hyper_parameters"]
    other = tiny_run_config()
    other["sampler"]["steps"] = stored["run_cfg"]["sampler"]["steps"] + 7
    check_resumable(trained / "last.ckpt", other, stored["data_info"])  # no error
    other["loss"]["p"] = 2.0
    with pytest.raises(ModelFileError, match="differs in run_cfg.loss.p"):
        check_resumable(trained / "last.ckpt", other, stored["data_info"])


@pytest.mark.slow
@pytest.mark.xdist_group("trained_run")
def test_bad_model_files(trained, tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelFileError, match="not a readable model file"):
        load_denoiser(bad)
    torch.save({"some": "dict"}, bad)
    with pytest.raises(ModelFileError, match="not a slimdiff model.pt"):
        load_denoiser(bad)
    payload = read_model_file(trained / "model.pt")
    payload["run_cfg"]["model"]["channels"] = [8, 32]
    parts = (payload["state_dict"], payload["run_cfg"], payload["data_info"], payload["provenance"])
    save_model(bad, *parts, weights="ema")
    with pytest.raises(ModelFileError, match="weights do not match the model config"):
        load_denoiser(bad)
    with pytest.raises(ValueError, match="weights must be one of"):
        save_model(bad, *parts, weights="best")
    with pytest.raises(ModelFileError, match="not found"):
        load_denoiser(tmp_path / "missing.pt")


def test_run_grid_names():
    from slimdiff.config import validate_config

    cfg = validate_config(
        {
            "experiments": {
                "prediction": ["epsilon", "v", "x0"],
                "p": [1.5, 2.0],
                "self_conditioning": [0.0, 0.5],
                "variant": ["shared", "decoupled"],
            }
        }
    )
    runs = expand_runs(cfg)
    assert len(runs) == 24
    assert "x0_lp1.5_sc0.5" in runs and "epsilon_lp2.0_sc0.0-decoupled" in runs
    assert runs["v_lp2.0_sc0.0"]["self_conditioning"]["enabled"] is False
    assert runs["v_lp2.0_sc0.0"]["diffusion"]["prediction"] == "v"
    assert run_name("x0", 2.25, 0.8) == "x0_lp2.25_sc0.8"


@pytest.mark.slow
def test_workflow_restarts_on_a_config_change(tiny_cache, tmp_path):
    train_run(tiny_cache, tmp_path, tiny_run_config(max_epochs=1), fold=0, device="cpu")
    other = tiny_run_config(max_epochs=1)
    other["loss"]["p"] = 2.0
    train_run(tiny_cache, tmp_path, other, fold=0, device="cpu", restart_on_config_change=True)
    assert read_model_file(tmp_path / "model.pt")["run_cfg"]["loss"]["p"] == 2.0
    assert pd.read_csv(tmp_path / "log.csv")["epoch"].tolist() == [0]


@pytest.mark.slow
def test_training_with_ffl_kendall_groups_and_a_per_sample_coin(tiny_cache, tmp_path):
    """One epoch of upstream's FFL setting: log.csv follows the two learned log-variances from [0.0, 0.5]."""
    cfg = tiny_run_config(max_epochs=1)
    cfg["loss"].update(uncertainty_weighting=True)
    cfg["loss"]["ffl"].update(enabled=True, alpha=1.35, patch_factor=2, log_matrix=True, form="upstream")
    cfg["loss"]["ffl"]["detach_weights"] = False
    cfg["self_conditioning"]["per_sample"] = True
    train_run(tiny_cache, tmp_path, cfg, fold=0, device="cpu", run_name="x0_lp1.5_sc0.5-sample")
    log = pd.read_csv(tmp_path / "log.csv")
    assert log[["train_loss", "val_loss"]].notna().all().all()
    moved = log[["log_var_image_mask", "log_var_ffl"]].iloc[-1].to_numpy() - np.array([0.0, 0.5])
    assert (np.abs(moved) > 0).all() and (np.abs(moved) < 0.05).all()  # trained, by a few AdamW steps of 1e-4


class _Oracle(torch.nn.Module):
    """An x0 'network' that returns a fixed answer, so the Dice bookkeeping has known results."""

    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def forward(self, x_t, t, tokens, x0_sc=None):
        return self.answer


def test_mask_dice_pools_pixels_over_lesion_slices():
    from slimdiff.training.module import DiffusionModule, pooled_dice

    module = DiffusionModule(
        tiny_run_config(mask_dice_timesteps=[10, 400]), {"z_bins": 4, "z_range": [0, 3], "image_size": [32, 32]}
    )
    x0 = -torch.ones(3, 2, 32, 32)
    x0[0, 1, 10:14, 10:14] = 1  # 16 px
    x0[2, 1, 0:4, 0:8] = 1  # 32 px; slice 1 has no lesion and is skipped
    lesion_rows = x0[[0, 2]]
    tokens, eps = torch.tensor([4, 0, 5]), torch.zeros_like(x0)

    def dice_of(answer):
        module.net = _Oracle(answer)
        module.on_validation_epoch_start()
        module._count_mask_overlap(x0, tokens, eps)
        return {t: pooled_dice(c) for t, c in module._dice_counts.items()}

    assert dice_of(lesion_rows.clone()) == {10: 1.0, 400: 1.0}
    assert dice_of(-torch.ones_like(lesion_rows)) == {10: 0.0, 400: 0.0}  # "no lesion anywhere"
    half = lesion_rows.clone()
    half[1, 1] = -1  # finds the 16 px lesion, misses the 32 px one
    assert dice_of(half)[10] == pytest.approx(2 * 16 / (16 + 48))
    assert np.isnan(pooled_dice(torch.zeros(3)))


def test_mask_dice_timestep_beyond_the_schedule_is_refused():
    from slimdiff.training.module import DiffusionModule

    with pytest.raises(ValueError, match="mask_dice_timesteps"):
        DiffusionModule(
            tiny_run_config(mask_dice_timesteps=[1000]), {"z_bins": 4, "z_range": [0, 3], "image_size": [32, 32]}
        )


def test_channels_last_gives_the_same_network_output():
    from slimdiff.model.factory import build_denoiser, use_channels_last

    cfg = tiny_run_config()
    torch.manual_seed(0)
    net = build_denoiser(cfg["model"], True, 4, [0, 3], [32, 32]).eval()
    x, t, tok = torch.randn(2, 2, 32, 32), torch.tensor([3, 700]), torch.tensor([1, 6])
    with torch.no_grad():
        plain = net(x, t, tok, torch.zeros_like(x))
        fast = use_channels_last(net)(x, t, tok, torch.zeros_like(x))
    assert net.unet.conv_in.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(plain, fast, atol=1e-5)


@pytest.mark.parametrize("variant", ["shared", "zero_coupling"])
def test_channels_last_converts_the_input_too(variant):
    """With channels_last on, the first convolution sees channels-last input (training and sampling alike)."""
    from slimdiff.model.factory import build_denoiser, use_channels_last

    model = tiny_run_config()["model"]
    twin = {**model["twin"], "channels": [8, 16], "num_head_channels": 8, "norm_num_groups": 4}
    net = build_denoiser({**model, "variant": variant, "twin": twin}, True, 4, [0, 3], [32, 32]).eval()
    first = [net.unet.conv_in.conv] if variant == "shared" else [b.conv_in.conv for b in net.branches]
    seen = []
    for conv in first:
        conv.register_forward_pre_hook(
            lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
        )
    x, t, tok = torch.randn(2, 2, 32, 32), torch.tensor([3, 700]), torch.tensor([1, 6])
    with torch.no_grad():
        net(x, t, tok, torch.zeros_like(x))
        assert seen == [False] * len(first)
        seen.clear()
        use_channels_last(net)(x, t, tok, torch.zeros_like(x))
    assert seen == [True] * len(first)


@pytest.mark.parametrize(
    "extra",
    [{}, {"variant": "decoupled"}, {"anatomical_prior": "cross_attention", "prior_context_dim": 8}],
    ids=["shared", "decoupled", "cross_attention"],
)
def test_channels_last_stays_channels_last_through_the_attention_blocks(extra):
    """MONAI's attention blocks copy back to NCHW; after use_channels_last every convolution (attention
    levels included) sees NHWC input, and the output, gradients and state-dict keys match the plain network."""
    from slimdiff.model.factory import build_denoiser, use_channels_last

    model = {**tiny_run_config()["model"], "channels": [8, 16, 16], "attention_levels": [False, True, True], **extra}
    torch.manual_seed(0)
    plain = build_denoiser(model, True, 4, [0, 3], [32, 32])
    if model["anatomical_prior"] != "none":
        plain.set_priors(torch.rand(4, 32, 32) > 0.5)
    fast = copy.deepcopy(plain)
    keys = list(plain.state_dict())
    use_channels_last(fast)
    assert list(fast.state_dict()) == keys
    formats = []
    for conv in (m for m in fast.modules() if isinstance(m, torch.nn.Conv2d)):
        conv.register_forward_pre_hook(
            lambda m, args: formats.append(
                args[0].shape[-1] == 1 or args[0].is_contiguous(memory_format=torch.channels_last)
            )
        )
    x, t, tok = torch.randn(2, 2, 32, 32), torch.tensor([3, 700]), torch.tensor([1, 6])
    outs, grads = [], []
    for net in (plain, fast):
        out = net(x, t, tok, torch.zeros_like(x))
        out.square().mean().backward()
        outs.append(out.detach())
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters() if p.grad is not None]))
    assert formats and all(formats)
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_dropped_tokens_become_the_embedding_null_token():
    """Classifier-free-guidance dropout shifts a token by the embedding's null offset (the z-bin is kept)."""
    from slimdiff.model.conditioning import ConditionEmbedding
    from slimdiff.training.module import DiffusionModule

    cfg = tiny_run_config(cfg_dropout=1.0)
    cfg["model"]["cfg_null_token"] = True
    module = DiffusionModule(cfg, {"z_bins": 4, "z_range": [0, 3], "image_size": [32, 32]})
    module.log = lambda *args, **kwargs: None  # outside a Trainer
    embedding = next(m for m in module.net.modules() if isinstance(m, ConditionEmbedding))
    seen = []
    embedding.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    tokens = torch.arange(8)
    module.training_step((torch.rand(8, 2, 32, 32) * 2 - 1, tokens), 0)
    assert seen and all(torch.equal(s, tokens + embedding.null_token) for s in seen)
    assert embedding.null_token == 8


def _load_benchmark(name: str):
    import importlib.util

    from conftest import REPO

    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_throughput_benchmark_times_the_real_training_step(monkeypatch):
    """benchmarks/train_throughput.py runs DiffusionModule's step, optimiser and the EMA callback in a Trainer."""
    from lightning.pytorch.callbacks import EMAWeightAveraging

    from slimdiff.training.module import DiffusionModule

    bench = _load_benchmark("train_throughput")
    calls = {"training_step": 0, "configure_optimizers": 0, "ema_update": 0}

    def counting(cls, name, key):
        original = getattr(cls, name)

        def wrapper(self, *args, **kwargs):
            calls[key] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, wrapper)

    counting(DiffusionModule, "training_step", "training_step")
    counting(DiffusionModule, "configure_optimizers", "configure_optimizers")
    counting(EMAWeightAveraging, "on_train_batch_end", "ema_update")
    result = bench.time_training_steps(tiny_run_config(), 32, "cpu", 2, 2, False, False, n_bins=4)
    assert calls == {"training_step": 3, "configure_optimizers": 1, "ema_update": 3}  # 1 warm-up + 2 timed
    assert result["seconds_per_step"] > 0 and result["precision"] == "32-true" and result["batch"] == 2


def test_realism_levers_benchmark_applies_its_overrides_to_a_valid_config():
    """A variant is dotted.key=value pairs on the default config; 2e-3 is a number, an unknown section an error."""
    from conftest import REPO

    from slimdiff.config import validate_config

    bench = _load_benchmark("realism_levers")
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    overrides = bench.parse_variant("training.lr=2e-3; model.channels=[16, 32, 64, 64]; training.seed=34")
    assert overrides == {"training.lr": 0.002, "model.channels": [16, 32, 64, 64], "training.seed": 34}
    cfg = validate_config(bench.apply_overrides(base, overrides))
    assert cfg["training"]["lr"] == 0.002 and cfg["model"]["channels"] == [16, 32, 64, 64]
    assert base["model"]["channels"] == [16, 32, 64]  # the base config is left alone
    assert bench.variant_name(overrides) == "lr0.002_channels16326464_seed34"
    with pytest.raises(SystemExit, match="'nosuch' is not a section"):
        bench.apply_overrides(base, {"nosuch.key": 1})
    with pytest.raises(SystemExit, match="not dotted.key=value"):
        bench.parse_variant("training.lr")


def test_a_run_stopped_before_its_first_validation_exports_its_last_weights(tiny_cache, tmp_path):
    """max_steps within the first epoch: no validation ran, so no best score; model.pt still holds the weights."""
    model = train_run(tiny_cache, tmp_path, tiny_run_config(max_steps=1), fold=0, device="cpu")
    provenance = read_model_file(model)["provenance"]
    assert provenance["best_val_loss"] is None and provenance["global_step"] == 1
    assert load_denoiser(model)[0] is not None


def test_denoising_error_benchmark_scores_known_networks_and_a_trained_one(tiny_model, tiny_cache):
    """An oracle (returns the clean slice) scores 0; a network that hands back its rescaled input scores the
    input's own error; a trained model gets one row per timestep, its input error growing with t."""
    from slimdiff.diffusion.schedule import Diffusion

    bench = _load_benchmark("denoising_error")
    gen = torch.Generator().manual_seed(1)
    x0 = torch.rand(6, 2, 16, 16, generator=gen) * 1.6 - 0.8
    tokens = torch.zeros(6, dtype=torch.long)
    diffusion = Diffusion(1000, "x0")

    def oracle(x_t, t, tok, sc=None):
        return x0

    def rescaled_input(x_t, t, tok, sc=None):
        return x_t / diffusion.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1)

    steps = [0, 100, 500]
    perfect = bench.denoising_error(oracle, diffusion, x0, tokens, steps)
    assert [r["estimate_mae"] for r in perfect] == [0.0, 0.0, 0.0]
    inputs = [r["input_mae"] for r in perfect]
    assert inputs[0] < 0.01 < inputs[1] < inputs[2]
    copied = bench.denoising_error(rescaled_input, diffusion, x0, tokens, steps)
    assert [r["input_mae"] for r in copied] == inputs  # the same seeded noise for every network
    for row in copied:  # clamping to [-1, 1] can only bring a copy of the input closer to a slice inside it
        assert 0 < row["estimate_mae"] <= row["input_mae"] + 1e-6

    from slimdiff.data.slices import token
    from slimdiff.metrics.evaluate import real_split

    net, trained_diffusion, payload = load_denoiser(tiny_model)
    real = real_split(tiny_cache, 0, "test")
    x0 = torch.from_numpy(np.stack([real["images"], real["masks"]], axis=1)).float()
    tokens = torch.as_tensor(token(real["z_bin"], real["class"], payload["data_info"]["z_bins"])).long()
    rows = bench.denoising_error(net, trained_diffusion, x0, tokens, steps)
    assert [r["t"] for r in rows] == steps
    assert rows[0]["input_mae"] < rows[1]["input_mae"] < rows[2]["input_mae"]
    assert all(0 < r["estimate_mae"] < 2 for r in rows)
