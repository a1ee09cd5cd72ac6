"""One training cell on several devices: DDP on the CPU (gloo, 2 processes) at 32x32 with the tiny model.

The sampler shares out the single-process draw; a DDP step on 2 ranks x batch b is the single-process step on
batch 2b; a 2-rank training SIGKILLed mid-epoch and run again ends with the weights of an uninterrupted one.
"""

import os
import signal
import subprocess
import sys
import time

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, tiny_run_config

from slimdiff.model.file import read_model_file
from slimdiff.training.data import EpochSampler, ShardedBatches
from slimdiff.training.module import DiffusionModule
from slimdiff.training.runner import train_run

# ---- the distributed lesion-balanced sampler ----


@pytest.mark.parametrize("weighted", [True, False])
@pytest.mark.parametrize("n", [12, 37])
def test_ranks_share_out_the_single_process_draw(weighted, n):
    """For world sizes 1, 2, 3 and several epochs: the ranks' shares are disjoint positions of the single-process
    draw of the same seed and epoch, their union is that draw (less its last n mod W positions), each rank gets
    the same number, and rank r's k-th batch of b is rows r, r+W, ... of the single-process k-th batch of W*b."""
    weights = np.where(np.arange(n) % 5 == 0, 4.0, 1.0) if weighted else None
    single = EpochSampler(n, seed=33, weights=weights)
    draws = {}
    for epoch in range(4):
        single.set_epoch(epoch)
        draw = list(single)
        assert draw == list(single), "a function of (seed, epoch) alone"
        draws[epoch] = draw
        for world in (1, 2, 3):
            ranks = [EpochSampler(n, 33, weights, num_replicas=world, rank=r) for r in range(world)]
            for s in ranks:
                s.set_epoch(epoch)
            shares = [list(s) for s in ranks]
            kept = (n // world) * world
            assert all(len(share) == n // world == len(s) for share, s in zip(shares, ranks, strict=True))
            positions = [list(range(r, kept, world)) for r in range(world)]
            assert sorted(p for ps in positions for p in ps) == list(range(kept)), "disjoint, covering"
            for share, ps in zip(shares, positions, strict=True):
                assert share == [draw[p] for p in ps]
            union = sorted(i for share in shares for i in share)
            assert union == sorted(draw[:kept])
            b = 2
            for k in range(len(shares[0]) // b):
                big = draw[k * b * world : (k + 1) * b * world]
                for r, share in enumerate(shares):
                    assert share[k * b : (k + 1) * b] == big[r::world]
    assert len({tuple(d) for d in draws.values()}) == 4, "reseeded each epoch"


def test_sampler_refuses_more_ranks_than_slices():
    with pytest.raises(ValueError, match="training.devices"):
        EpochSampler(2, 0, num_replicas=3, rank=0)


@pytest.mark.parametrize(("n", "batch", "world"), [(10, 4, 1), (10, 4, 2), (10, 4, 3), (3, 4, 2), (16, 4, 2)])
def test_validation_batches_are_dealt_out_whole(n, batch, world):
    """Every single-process batch goes to exactly one rank, in its global position; the ranks get equally many
    batches, stand-ins (global index past the end) filling the gaps."""
    ranks = [ShardedBatches(n, batch, world, r) for r in range(world)]
    single = list(ShardedBatches(n, batch))
    assert len({len(s) for s in ranks}) == 1
    got = {}
    for r, s in enumerate(ranks):
        for local, indices in enumerate(s):
            g = s.global_index(local)
            if g < s.batches:
                assert g % world == r and g not in got
                got[g] = indices
    assert [got[g] for g in range(len(single))] == single


# ---- DDP training on the CPU ----


def _weights(out):
    """(EMA weights of model.pt, raw weights of last.ckpt) of a run directory."""
    ema = read_model_file(out / "model.pt")["state_dict"]
    ckpt = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)
    raw = {k.removeprefix("net."): v for k, v in ckpt["current_model_state"].items() if k.startswith("net.")}
    return ema, raw


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
def test_a_ddp_step_is_the_single_process_step_on_the_effective_batch(tiny_cache, tmp_path):
    """2 ranks x batch 4 against 1 process x batch 8, self-conditioning on (0.5, per sample) and EMA on, from the
    same seed, for one epoch: the weights after the steps agree to float tolerance, far below how far they moved,
    and so do log.csv's train and validation losses and mask-Dice columns (validation dealt out in whole batches
    and reduced across the ranks). More than one step: AdamW's first step moves every weight by lr x
    sign(gradient), which alone would only compare signs."""
    common = {"max_epochs": 1, "lr": 1e-3, "ema_decay": 0.5, "threads": 1}
    sc = {"self_conditioning": {"enabled": True, "probability": 0.5, "per_sample": True}}
    single_cfg = tiny_run_config(batch_size=8, devices=1, **common)
    ddp_cfg = tiny_run_config(batch_size=4, devices=2, **common)
    for cfg in (single_cfg, ddp_cfg):
        cfg.update(sc)
    train_run(tiny_cache, tmp_path / "single", single_cfg, fold=0, device="cpu")
    train_run(tiny_cache, tmp_path / "ddp", ddp_cfg, fold=0, device="cpu")
    ema_1, raw_1 = _weights(tmp_path / "single")
    ema_2, raw_2 = _weights(tmp_path / "ddp")
    pl.seed_everything(single_cfg["training"]["seed"], verbose=False)  # the initial weights, as train_run draws them
    info = read_model_file(tmp_path / "single" / "model.pt")["data_info"]
    start = {k: v.detach() for k, v in DiffusionModule(single_cfg, info).net.state_dict().items()}
    moved = _max_diff(raw_1, start)
    # Float tolerance: the ranks' gradients are averaged by an all-reduce rather than summed in one backward, and
    # AdamW divides by sqrt(v). A different noise or sample draw would move weights by about lr per step.
    assert moved > 3e-3, "the steps moved the weights"
    assert _max_diff(raw_1, raw_2) < moved / 100, (_max_diff(raw_1, raw_2), moved)
    assert _max_diff(ema_1, ema_2) < moved / 100, (_max_diff(ema_1, ema_2), moved)
    log_1, log_2 = pd.read_csv(tmp_path / "single" / "log.csv"), pd.read_csv(tmp_path / "ddp" / "log.csv")
    columns = ["step", "train_loss", "val_loss", "mask_dice_t100", "mask_dice_t500", "input_dice_t100"]
    assert log_1["step"].tolist() == log_2["step"].tolist() and len(log_1) == 1
    pd.testing.assert_frame_equal(log_1[columns], log_2[columns], check_exact=False, rtol=1e-4, atol=1e-6)
    prov = read_model_file(tmp_path / "ddp" / "model.pt")["provenance"]
    assert (prov["world_size"], prov["batch_size_per_device"], prov["effective_batch_size"]) == (2, 4, 8)
    assert read_model_file(tmp_path / "single" / "model.pt")["provenance"]["effective_batch_size"] == 8


# A 2-rank training as its own process (the supervisor), to be SIGKILLed from outside.
TRAIN_2_RANKS = """
import sys
sys.path.insert(0, sys.argv[3])
from conftest import tiny_run_config
from slimdiff.training.runner import train_run
train_run(sys.argv[1], sys.argv[2], tiny_run_config(max_epochs=3, batch_size=4, devices=2), fold=0, device="cpu")
"""


@pytest.fixture(scope="module")
def uninterrupted_2_ranks(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp_uninterrupted")
    train_run(tiny_cache, out, tiny_run_config(max_epochs=3, batch_size=4, devices=2), fold=0, device="cpu")
    return out


def _ranks_of(supervisor_pid: int) -> list[int]:
    """Live processes whose parent is the supervisor."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == supervisor_pid and fields[0] != "Z":
                out.append(int(entry))
    return out


@pytest.mark.slow
def test_a_2_rank_training_killed_mid_epoch_resumes_to_the_uninterrupted_weights(
    uninterrupted_2_ranks, tiny_cache, tmp_path
):
    out = tmp_path / "train"
    args = [str(tiny_cache), str(out), str(REPO / "tests")]
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_2_RANKS, *args], stderr=subprocess.PIPE, text=True)
    log_csv, deadline = out / "log.csv", time.monotonic() + 300
    # epoch 0 done (a checkpoint, one row in log.csv), then into epoch 1
    while not (log_csv.exists() and len(pd.read_csv(log_csv)) >= 1):
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no epoch within 300 s"
        time.sleep(0.05)
    ranks = _ranks_of(proc.pid)
    assert len(ranks) == 2
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "model.pt").exists(), "the run ended before the kill: make it longer"
    for pid in ranks:  # the ranks die with their supervisor
        deadline = time.monotonic() + 30
        while os.path.exists(f"/proc/{pid}") and "Z" not in open(f"/proc/{pid}/stat").read().split()[2]:
            assert time.monotonic() < deadline, f"rank {pid} outlived its supervisor"
            time.sleep(0.05)
    killed_at = len(pd.read_csv(log_csv))
    assert killed_at < 3
    for name in ("log.csv", "loss.png"):  # what Snakemake removes of a failed job
        (out / name).unlink(missing_ok=True)
    train_run(tiny_cache, out, tiny_run_config(max_epochs=3, batch_size=4, devices=2), fold=0, device="cpu")
    ours, ref = read_model_file(out / "model.pt"), read_model_file(uninterrupted_2_ranks / "model.pt")
    differ = [k for k in ref["state_dict"] if not torch.equal(ours["state_dict"][k], ref["state_dict"][k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    keys = ("epoch", "global_step", "best_val_loss", "world_size", "effective_batch_size")
    assert {k: ours["provenance"][k] for k in keys} == {k: ref["provenance"][k] for k in keys}
    log, ref_log = pd.read_csv(out / "log.csv"), pd.read_csv(uninterrupted_2_ranks / "log.csv")
    assert log["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(log.drop(columns="seconds"), ref_log.drop(columns="seconds"), check_exact=True)
    assert log[["train_loss", "val_loss", "mask_dice_t100"]].notna().all().all()


@pytest.mark.slow
def test_a_2_rank_training_stopped_with_sigterm_stops_its_ranks_and_says_so(tiny_cache, tmp_path):
    """scancel or a time limit: the supervisor stops its ranks, logs why, and exits with 143 (128 + SIGTERM)."""
    from slimdiff.training import ddp

    out = tmp_path / "train"
    args = [str(tiny_cache), str(out), str(REPO / "tests")]
    proc = subprocess.Popen([sys.executable, "-c", TRAIN_2_RANKS, *args], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while len(ranks := _ranks_of(proc.pid)) < 2:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "no 2 ranks within 300 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    assert "stopped by SIGTERM" in proc.stderr.read()
    assert not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in ranks)
    assert not (out / ddp.SPEC_NAME).exists()


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]  # noqa: SIM115
    except OSError:
        return "gone"


def test_a_failing_rank_stops_the_others_and_the_job(tiny_cache, tmp_path, monkeypatch):
    """A rank that cannot start (here: an unreadable spec) fails the job with the rank named, no hang."""
    from slimdiff.training import ddp

    monkeypatch.setattr(ddp.pickle, "dumps", lambda spec: b"not a pickle")
    with pytest.raises(RuntimeError, match=r"DDP rank \d of 2 failed"):
        train_run(tiny_cache, tmp_path, tiny_run_config(max_epochs=1, batch_size=4, devices=2), fold=0, device="cpu")
    assert not (tmp_path / ddp.SPEC_NAME).exists()


# Through Snakemake and DVC: tests/test_ddp_dvc.py (DVC's stage `compute` runs `snakemake compute --resources gpu=N`).


def test_a_checkpoint_from_before_ddp_resumes_as_a_one_device_run(tmp_path):
    """last.ckpt files written before training.devices existed hold run configs without it: they trained on one
    device, and resume as such; a different world size is refused, naming the key."""
    import copy

    from slimdiff.model.file import ModelFileError
    from slimdiff.training.runner import check_resumable

    cfg, info = tiny_run_config(), {"z_bins": 4, "fold": 0}
    old = copy.deepcopy(cfg)
    del old["training"]["devices"]
    torch.save({"hyper_parameters": {"run_cfg": old, "data_info": info}}, tmp_path / "last.ckpt")
    check_resumable(tmp_path / "last.ckpt", cfg, info)
    cfg["training"]["devices"] = 2
    with pytest.raises(ModelFileError, match=r"training\.devices \(1 -> 2\)"):
        check_resumable(tmp_path / "last.ckpt", cfg, info)


def test_a_ddp_training_asks_the_scheduler_for_its_memory_per_rank():
    """cluster.train.mem_mb is per rank: each rank is a whole process (on a CPU, a whole training's memory)."""
    from types import SimpleNamespace

    from slimdiff.training.ddp import train_resources

    runs = {"one": {"training": {"devices": 1}}, "two": {"training": {"devices": 2}}}
    res = train_resources({"gpu": 1, "runtime": 60, "mem_mb": 16000, "cpus_per_gpu": 4}, runs)
    assert res["mem_mb"](SimpleNamespace(run="one")) == 16000
    assert res["mem_mb"](SimpleNamespace(run="two")) == 32000
    assert (
        res["tasks_per_node"](SimpleNamespace(run="two")) == 2
        and res["tasks_per_node"](SimpleNamespace(run="one")) is None
    )
