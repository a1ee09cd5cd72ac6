"""Train one run on one fold with Lightning, resumably, and export model.pt.

Outputs in OUT_DIR: last.ckpt (full state, for resume), best.ckpt (best EMA val/loss), model.pt (EMA weights of
the best epoch + config, weights_only-loadable), log.csv (one row per epoch), loss.png, config.yaml (the
resolved run config), versions.json.

Running the same command again after a kill resumes from last.ckpt and ends with the same model.pt and log.csv
as an uninterrupted run (see EpochSeeds); a last.ckpt written by another config is refused with the keys that
differ. Every file is written to a temporary sibling and renamed into place, checkpoints included.

With training.devices = N > 1 the run trains with DDP on N ranks (training/ddp.py starts them: N processes
on a workstation or the CPU, N SLURM tasks in an allocation): NCCL on CUDA, gloo on the CPU. training.batch_size
is the per-device batch, the effective batch N times it, and each step is the single-process step on that
effective batch (training/data.py, training/module.py). Rank 0 alone writes files (checkpoints, log.csv,
model.pt); every rank reads last.ckpt to resume.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
import yaml
from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason
from lightning.pytorch.plugins.environments import LightningEnvironment, SLURMEnvironment
from lightning.pytorch.strategies import DDPStrategy
from matplotlib.figure import Figure
from torch.utils.data import DataLoader

from slimdiff import provenance
from slimdiff.data.cache import load_cache
from slimdiff.data.splits import fold_membership
from slimdiff.device import pick_device
from slimdiff.errors import SlimdiffInputError
from slimdiff.experiments import RUN_SECTIONS
from slimdiff.io import atomic_path, read_table, write_json, write_text
from slimdiff.model.factory import use_channels_last
from slimdiff.model.file import ModelFileError, save_model
from slimdiff.model.priors import compute_zbin_priors
from slimdiff.rerun import rule_settings
from slimdiff.training import ddp
from slimdiff.training.data import (
    TRAINING_STREAM,
    EpochSampler,
    ShardedBatches,
    SliceDataset,
    epoch_seed,
    training_sampler,
)
from slimdiff.training.module import DiffusionModule

log = logging.getLogger(__name__)

# What may differ on resume besides the runtime keys (config/schema.yaml `x-rules: []`): a longer or shorter
# run of the same training.
_EXTENDABLE = {"run_cfg.training.max_epochs", "run_cfg.training.max_steps"}
LOG_COLUMNS = ["epoch", "step", "train_loss", "val_loss", "lr", "seconds"]


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def _identity(run_cfg: dict, data_info: dict) -> dict:
    """What a checkpoint must agree on to be resumed: what the model learns from (the train rule's params)."""
    learned = {s: rule_settings("train", s, run_cfg[s]) for s in RUN_SECTIONS if s in run_cfg}
    flat = _flatten({"run_cfg": learned, "data_info": data_info})
    return {k: v for k, v in flat.items() if k not in _EXTENDABLE}


def check_resumable(ckpt: Path, run_cfg: dict, data_info: dict) -> None:
    try:
        stored = torch.load(ckpt, map_location="cpu", weights_only=False).get("hyper_parameters", {})
    except Exception as exc:
        raise ModelFileError(
            f"{ckpt}: cannot read the checkpoint to resume from ({type(exc).__name__}: {exc}); delete it to start over"
        ) from None
    if "run_cfg" not in stored:
        raise ModelFileError(f"{ckpt}: not a slimdiff training checkpoint")
    ours, theirs = _identity(run_cfg, data_info), _identity(stored["run_cfg"], stored["data_info"])
    theirs.setdefault("run_cfg.training.devices", 1)  # checkpoints from before DDP trained on one device
    diff = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if diff:
        shown = ", ".join(f"{k} ({theirs.get(k)!r} -> {ours.get(k)!r})" for k in diff[:5])
        raise ModelFileError(
            f"{ckpt}: written by a different config, differs in {shown}"
            + (f" and {len(diff) - 5} more" if len(diff) > 5 else "")
            + "; delete it or train into another directory"
        )


class EpochLog(pl.Callback):
    """log.csv, one row per epoch.

    The rows also live in the callback state, so they travel inside every checkpoint: a resumed run rewrites
    log.csv from last.ckpt (even if the file was deleted, as Snakemake does with a failed job's outputs) and
    never shows a gap or an epoch that the checkpoint did not see. Lightning restores the state before it
    decides whether any epoch is left to run, so train_run's `write()` after fit also rewrites log.csv when none
    was (a kill after the last epoch, before the export).
    """

    def __init__(self, path: Path, mask_dice_timesteps: list[int], log_var_names: tuple[str, ...] = ()):
        self.path, self.rows = path, []
        self.dice_keys = [f"mask_dice_t{t}" for t in mask_dice_timesteps]
        # With Kendall weighting, the learned log-variances at the end of each epoch (log_var_image, ...).
        self.log_var_names = tuple(log_var_names)
        # What the rescaled noisy input alone scores at each t (module.py): last, so a checkpoint's rows from
        # before these columns existed are padded at the end like any other.
        self.input_dice_keys = [f"input_dice_t{t}" for t in mask_dice_timesteps]
        self.columns = (
            LOG_COLUMNS + self.dice_keys + [f"log_var_{n}" for n in self.log_var_names] + self.input_dice_keys
        )
        self._sum, self._n, self._t0, self._lr = 0.0, 0, time.time(), float("nan")

    def state_dict(self) -> dict:
        return {"rows": [list(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict) -> None:
        # Rows of a checkpoint written before the mask-Dice columns existed are padded with NaN.
        pad = len(self.columns)
        self.rows = [list(r) + [float("nan")] * (pad - len(r)) for r in state_dict["rows"]]

    def write(self) -> None:
        write_text(self.path, pd.DataFrame(self.rows, columns=self.columns).to_csv(index=False))

    def on_train_start(self, trainer, pl_module):
        if trainer.is_global_zero:  # under DDP one rank writes; every rank keeps the same rows
            self.write()

    def on_train_epoch_start(self, trainer, pl_module):
        self._sum, self._n, self._t0 = 0.0, 0, time.time()
        self._lr = trainer.optimizers[0].param_groups[0]["lr"]  # the rate used in this epoch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self._sum += float(outputs["loss"])
        self._n += 1

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics

        def metric(key: str) -> float:
            return float(metrics[key]) if key in metrics else float("nan")

        # The epoch's mean step loss over every rank's batches (each rank saw its share of each step's batch).
        total, n = self._sum, self._n
        if trainer.world_size > 1:
            summed = torch.tensor([total, n], dtype=torch.float64, device=pl_module.device)
            total, n = (float(v) for v in trainer.strategy.reduce(summed, reduce_op="sum"))
        self.rows.append(
            [
                trainer.current_epoch,
                trainer.global_step,
                total / max(n, 1),
                metric("val/loss"),
                self._lr,
                round(time.time() - self._t0, 2),
                *(metric(f"val/{key}") for key in self.dice_keys),
                *(float(s) for s in pl_module.criterion.log_vars().values()),
                *(metric(f"val/{key}") for key in self.input_dice_keys),
            ]
        )
        if trainer.is_global_zero:
            self.write()


class EpochSeeds(pl.Callback):
    """Each training epoch draws its random numbers from seeds of (training seed, epoch), so a run killed and
    resumed from last.ckpt ends bit for bit where an uninterrupted run ends (on a GPU, up to the nondeterminism
    that its kernels already allow).

    An epoch consumes the global torch RNG (noise, timesteps, the self-conditioning coin, the CFG token dropout;
    torch.manual_seed covers the CUDA generators too), numpy's and python's (seeded as well, though nothing draws
    from them now), and a sample order. A checkpoint holds the weights, the optimizer, the EMA and the loops, not
    the RNGs, so a resumed epoch used to draw from wherever the fresh process's seeding and model init left
    them. Here each epoch starts from seeds of its own: on_train_epoch_start (after Lightning's
    sampler.set_epoch, before the epoch's first batch) seeds the global RNGs, and the EpochSampler draws its
    order from (seed, epoch). Epoch k is thus a function of (state at its start, seed, k) in a resumed run and
    an uninterrupted one alike: what a distributed sampler needs too. Checkpointing the RNG states instead
    would work only if nothing drew between the save and the next epoch in either run; reseeding does not care.

    Lightning's hook order (2.6) that matters: a fit's first epoch gets its training iterator in setup_data,
    before on_train_start and set_epoch; every later epoch after set_epoch and on_train_epoch_start. So
    (1) the training loader has a generator of its own for its workers' base seed (a draw from the global RNG
    there would shift the epoch's draws by one depending on whether the epoch was the fit's first), and
    (2) on resume the sampler learns the epoch from the checkpoint, as it is loaded: a loader with workers
    draws its first indices when the iterator is made. Validation draws only from generators seeded per batch
    (DiffusionModule.validation_step), and SliceDataset draws nothing, so the workers' seeds do not matter.
    """

    def __init__(self, seed: int, sampler: EpochSampler):
        self.seed, self.sampler = seed, sampler

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # last.ckpt is written at the end of epoch checkpoint["epoch"]; the fit resumes with the next one.
        self.sampler.set_epoch(checkpoint["epoch"] + 1)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        seed = epoch_seed(self.seed, trainer.current_epoch, TRAINING_STREAM)
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


class StayStopped(pl.Callback):
    """A run that stopped early stays stopped when it is run again. Lightning restores EarlyStopping's state from
    last.ckpt but not trainer.should_stop, so the rerun would train one more epoch before EarlyStopping, seeing
    no improvement again, stopped it."""

    def on_train_start(self, trainer, pl_module) -> None:
        early = trainer.early_stopping_callback
        if early is not None and early.stopping_reason is not EarlyStoppingReason.NOT_STOPPED:
            log.info("the run stopped early at epoch %d: nothing to train", early.stopped_epoch)
            trainer.should_stop = True


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written to a temporary sibling and renamed into place. Lightning's own save moves a file from
    $TMPDIR, a copy that a kill can cut short when $TMPDIR is another file system (a node's local disk)."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_path(path, suffix=".ckpt") as tmp:
            torch.save(checkpoint, tmp)


def fold_priors(cache, fold: int) -> np.ndarray:
    """z-bin priors from the fold's TRAIN slices only: validation and test subjects never shape them."""
    train = cache.index[fold_membership(cache.index, fold) == "train"]
    return compute_zbin_priors(cache.images[train["row"].to_numpy()], train["z_bin"].to_numpy(), cache.meta["z_bins"])


def plot_losses(log_csv: Path, out_png: Path, title: str) -> None:
    """Losses on the left; on the right the mask channel's lesion Dice, which the loss hides."""
    rows = read_table(log_csv)
    dice = [c for c in rows.columns if c.startswith("mask_dice_t")]
    fig = Figure(figsize=(10, 4))
    axes = fig.subplots(1, 2)
    ax = axes[0]
    ax.plot(rows["epoch"], rows["train_loss"], label="train (epoch mean)")
    ax.plot(rows["epoch"], rows["val_loss"], label="validation (EMA, stratified t)")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    if (rows[["train_loss", "val_loss"]] > 0).all().all():
        ax.set_yscale("log")
    ax.legend()
    ax = axes[1]
    for column in dice:
        step = column.removeprefix("mask_dice_t")
        (line,) = ax.plot(rows["epoch"], rows[column], marker="o", ms=3, label=f"t = {step}")
        reference = f"input_dice_t{step}"  # the noisy input alone: the network's own work is the gap above it
        if reference in rows:
            ax.plot(rows["epoch"], rows[reference], ls="--", color=line.get_color(), label=f"t = {step}, input")
    ax.set(xlabel="epoch", ylabel="lesion Dice of the x0 estimate", ylim=(0, 1), title="mask channel (validation)")
    if dice:
        ax.legend()
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def resolve_precision(precision: str, device: str) -> str:
    """training.precision as Lightning takes it: auto = bf16-mixed on CUDA, 32-true on the CPU."""
    if precision == "auto":
        return "bf16-mixed" if device == "cuda" else "32-true"
    return precision


# model.pt holds the EMA weights: EMAWeightAveraging puts its average into the state_dict of every checkpoint.
EXPORTED_WEIGHTS = "ema"


def train_run(
    cache_dir: str | Path,
    out_dir: str | Path,
    run_cfg: dict,
    fold: int = 0,
    device: str = "auto",
    run_name: str = "run",
    restart_on_config_change: bool = False,
) -> Path:
    """Train (or resume) one run; returns the path of model.pt.

    A last.ckpt from another config is an error, unless `restart_on_config_change` (the workflow's choice:
    Snakemake reruns a job exactly because its parameters changed), which discards it and starts over.
    With training.devices > 1 this process starts the DDP ranks and waits for them (training/ddp.py).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    world = run_cfg["training"]["devices"]
    device = _training_device(device, world)
    data_info = _data_info(load_cache(cache_dir), fold)
    last = out_dir / "last.ckpt"
    # Here, once, before any rank reads it.
    _keep_or_discard_last_checkpoint(out_dir, last, run_cfg, data_info, restart_on_config_change)
    spec = {"cache_dir": str(cache_dir), "out_dir": str(out_dir), "run_cfg": run_cfg, "fold": fold}
    spec |= {"device": device, "run_name": run_name}
    if world == 1:
        _fit_rank(**spec)
    else:
        ddp.launch(spec, world, out_dir)
    model_pt = out_dir / "model.pt"
    if not model_pt.is_file():
        raise RuntimeError(f"{model_pt}: training ended without writing the model")
    return model_pt


def _fit_rank(cache_dir: str, out_dir: str, run_cfg: dict, fold: int, device: str, run_name: str) -> None:
    """Fit on this rank (the only one when training.devices is 1); rank 0 then exports model.pt."""
    out_dir = Path(out_dir)
    tr = run_cfg["training"]
    rank, world = ddp.rank_and_world() if tr["devices"] > 1 else (0, 1)
    if world != tr["devices"]:
        raise SlimdiffInputError(f"training.devices is {tr['devices']} but this rank was started in a world of {world}")
    torch.set_num_threads(max(1, tr["threads"] // world))  # the job's threads shared out among its ranks
    log.info("rank %d of %d: %d CPU thread(s)", rank, world, torch.get_num_threads())
    cache = load_cache(cache_dir)
    data_info = _data_info(cache, fold)
    last = out_dir / "last.ckpt"

    pl.seed_everything(tr["seed"], workers=True, verbose=False)  # before the weights are drawn (alike on every rank)
    train_loader, val_loader = _data_loaders(cache, fold, tr, device, rank, world)
    module = _diffusion_module(run_cfg, data_info, cache, fold)
    module.val_batches = val_loader.batch_sampler.batches
    precision = resolve_precision(tr["precision"], device)
    best, every_epoch = _checkpoints(out_dir)
    epoch_log = EpochLog(out_dir / "log.csv", module.mask_dice_timesteps, module.criterion.log_var_names)
    ours = [EpochSeeds(tr["seed"], train_loader.sampler), StayStopped(), epoch_log, best, every_epoch]
    trainer = _trainer(tr, device, precision, out_dir, world, ours)  # `ours` last: tests add callbacks
    if trainer.global_rank != rank:
        raise RuntimeError(f"Lightning placed this process at rank {trainer.global_rank}, its launcher at {rank}")
    if world > 1:
        environment = type(trainer.strategy.cluster_environment).__name__
        log.info("DDP rank %d of %d on %s (%s), batch %d per device, %d in all", rank, world, device, environment,
                 tr["batch_size"], tr["batch_size"] * world)  # fmt: skip
    trainer.fit(module, train_loader, val_loader, ckpt_path=str(last) if last.exists() else None)
    if not trainer.is_global_zero:
        return

    # Also when fit had no epoch left to run (killed after the last one, before the export; Snakemake then
    # deletes log.csv, loss.png and model.pt): the callbacks' states came back from last.ckpt all the same.
    epoch_log.write()
    _export_model(out_dir, best, last, run_cfg, data_info, run_name, device, precision)
    _write_run_records(out_dir, run_cfg, run_name, fold)


def _training_device(device: str, world: int = 1) -> str:
    """cpu or cuda: Lightning gets the accelerator and training.devices; a GPU job leases its devices (or SLURM
    grants them), so on CUDA that many must be visible."""
    device = pick_device(device)
    if device not in ("cpu", "cuda"):
        raise SlimdiffInputError(
            f"training runs on auto, cpu or cuda, not {device!r} (CUDA_VISIBLE_DEVICES picks the GPU)"
        )
    if device == "cuda" and torch.cuda.device_count() < world:
        raise SlimdiffInputError(
            f"training.devices is {world} but {torch.cuda.device_count()} CUDA device(s) are visible "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')})"
        )
    return device


def _data_info(cache, fold: int) -> dict:
    """What the model depends on besides the run config: the cache's geometry and the fold."""
    return {
        "z_bins": cache.meta["z_bins"],
        "z_range": cache.meta["z_range"],
        "image_size": cache.meta["slice_shape"],
        "spacing_mm": cache.meta["config"]["cache"]["spacing"],
        "fold": fold,
        "cache_index_sha256": cache.meta["index_sha256"],
    }


def _keep_or_discard_last_checkpoint(
    out_dir: Path, last: Path, run_cfg: dict, data_info: dict, restart_on_config_change: bool
) -> None:
    """A last.ckpt of this config is resumed; one of another config is refused, or deleted when asked."""
    if not last.exists():
        return
    try:
        check_resumable(last, run_cfg, data_info)
        log.info("resuming from %s", last)
    except ModelFileError as exc:
        if not restart_on_config_change:
            raise
        log.warning("starting over: %s", exc)
        for stale in (last, out_dir / "best.ckpt"):
            stale.unlink(missing_ok=True)


def _data_loaders(
    cache, fold: int, tr: dict, device: str, rank: int = 0, world: int = 1
) -> tuple[DataLoader, DataLoader]:
    """The fold's training loader (lesion-balanced when asked; this rank's share under DDP, in per-device
    batches) and its validation loader (in batches of the effective batch, whole batches dealt to ranks)."""
    train_set = SliceDataset(cache, fold, "train")
    val_set = SliceDataset(cache, fold, "val", tr["val_max_slices"], tr["seed"])
    sampler = training_sampler(train_set, tr["seed"], tr["lesion_oversampling"], world, rank)
    loader_kw = {"num_workers": tr["num_workers"], "pin_memory": device == "cuda"}
    train_loader = DataLoader(
        train_set,
        sampler=sampler,
        batch_size=tr["batch_size"],
        drop_last=len(sampler) >= tr["batch_size"],
        generator=torch.Generator().manual_seed(tr["seed"]),  # the workers' base seed: not from the global RNG
        **loader_kw,
    )
    batches = ShardedBatches(len(val_set), tr["batch_size"] * world, world, rank)
    val_loader = DataLoader(val_set, batch_sampler=batches, **loader_kw)
    return train_loader, val_loader


def _diffusion_module(run_cfg: dict, data_info: dict, cache, fold: int) -> DiffusionModule:
    """The module to train: the fold's z-bin priors set, the network in channels_last and compiled if asked."""
    tr = run_cfg["training"]
    module = DiffusionModule(run_cfg, data_info)
    if run_cfg["model"]["anatomical_prior"] != "none":
        module.net.set_priors(fold_priors(cache, fold))
    if tr["channels_last"]:
        module.net = use_channels_last(module.net)
    if tr["compile"]:
        module.net = torch.compile(module.net)
    return module


def _checkpoints(out_dir: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """best.ckpt (lowest EMA val/loss) and last.ckpt (every epoch), each written over in place, best first.

    last.ckpt has a writer of its own: ModelCheckpoint(save_last=True) writes it only at an epoch where it
    writes a best one, so a run killed after epochs without improvement, or stopped early (after `patience` of
    them), would resume from its last improvement and train those epochs again.
    """
    best = ModelCheckpoint(
        dirpath=out_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1, enable_version_counter=False
    )
    return best, ModelCheckpoint(dirpath=out_dir, filename="last", enable_version_counter=False)  # no monitor


def _strategy(device: str, world: int):
    """One device; or DDP over `world` ranks that training/ddp.py started (NCCL on CUDA, gloo on the CPU)."""
    if world == 1:
        return "auto"
    launched_by_srun = os.environ.get(ddp.LAUNCHER_ENV) == "srun"
    return DDPStrategy(
        process_group_backend="nccl" if device == "cuda" else "gloo",
        cluster_environment=SLURMEnvironment(auto_requeue=False) if launched_by_srun else LightningEnvironment(),
        # Our buffers (the noise schedule, z-bin priors) are constants, alike on every rank: broadcasting them
        # before each forward is wasted, and in validation it would be a collective per batch, where ranks may
        # run different numbers of forwards.
        broadcast_buffers=False,
    )


def _trainer(tr: dict, device: str, precision: str, out_dir: Path, world: int, ours: list[pl.Callback]) -> pl.Trainer:
    """training.devices devices, EMA, early stopping, `ours` (seeds, log.csv, the checkpoints); a progress bar
    only outside SLURM."""
    progress = not os.environ.get("SLURM_JOB_ID")
    environment = [SLURMEnvironment(auto_requeue=False)] if world == 1 and SLURMEnvironment.detect() else []
    return pl.Trainer(
        accelerator="gpu" if device == "cuda" else "cpu",
        devices=world,
        strategy=_strategy(device, world),
        use_distributed_sampler=False,  # ours shares out the lesion-balanced draw (data.EpochSampler)
        precision=precision,
        max_epochs=tr["max_epochs"],
        max_steps=tr["max_steps"],
        limit_train_batches=tr["steps_per_epoch"] or 1.0,  # null: the whole epoch
        gradient_clip_val=tr["grad_clip"],
        callbacks=[
            *([TQDMProgressBar(refresh_rate=10)] if progress else []),  # not a log line per step in a rule's log
            EMAWeightAveraging(decay=tr["ema_decay"]),
            # not strict: a max_steps stop before the first validation has no val/loss to check yet
            EarlyStopping(monitor="val/loss", mode="min", patience=tr["early_stopping_patience"], strict=False),
            *ours,
        ],
        logger=False,
        default_root_dir=out_dir,
        num_sanity_val_steps=0,
        deterministic=True if device == "cpu" else "warn",
        enable_progress_bar=progress,
        enable_model_summary=False,
        # Under SLURM, Snakemake owns retries: Lightning must not requeue the job on SIGUSR1 behind its back.
        plugins=[AtomicCheckpointIO(), *environment],
    )


def _denoiser_state(module_state: dict) -> dict:
    """The network's tensors of a module state_dict, named as in an uncompiled network."""
    net_state = {k[len("net.") :]: v for k, v in module_state.items() if k.startswith("net.")}
    return {k.replace("_orig_mod.", ""): v for k, v in net_state.items()}


def _export_model(
    out_dir: Path,
    best: ModelCheckpoint,
    last: Path,
    run_cfg: dict,
    data_info: dict,
    run_name: str,
    device: str,
    precision: str,
) -> Path:
    """model.pt from the best checkpoint, or from the last one when no validation ran."""
    tr = run_cfg["training"]
    ckpt = torch.load(best.best_model_path or last, map_location="cpu", weights_only=False)
    # None when training stopped (max_steps) before the first validation: the last weights are exported.
    best_val_loss = None if best.best_model_score is None else float(best.best_model_score)
    model_pt = out_dir / "model.pt"
    save_model(
        model_pt,
        _denoiser_state(ckpt["state_dict"]),
        run_cfg,
        data_info,
        {
            "run": run_name,
            "epoch": int(ckpt["epoch"]),
            "global_step": int(ckpt["global_step"]),
            "best_val_loss": best_val_loss,
            "versions": provenance.versions(),
            "created": provenance.timestamp(),
            "device": device,
            "precision": precision,
            # training.batch_size is per device: what one optimiser step saw in all
            "world_size": tr["devices"],
            "batch_size_per_device": tr["batch_size"],
            "effective_batch_size": tr["batch_size"] * tr["devices"],
        },
        weights=EXPORTED_WEIGHTS,
    )
    if best_val_loss is None:
        log.warning("exported %s (epoch %s): no validation ran, so these are the last weights", model_pt, ckpt["epoch"])
    else:
        log.info("exported %s (epoch %s, best val/loss %.5f)", model_pt, ckpt["epoch"], best_val_loss)
    return model_pt


def _write_run_records(out_dir: Path, run_cfg: dict, run_name: str, fold: int) -> None:
    """loss.png, config.yaml (the resolved run config) and versions.json next to model.pt."""
    plot_losses(out_dir / "log.csv", out_dir / "loss.png", f"{run_name} (fold {fold})")
    write_text(out_dir / "config.yaml", yaml.safe_dump({"run": run_name, "fold": fold, **run_cfg}, sort_keys=False))
    write_json(out_dir / "versions.json", provenance.versions())
