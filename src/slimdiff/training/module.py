"""Lightning module: one training step of the joint image+mask diffusion model.

Per batch: t ~ U{0..T-1}, eps ~ N(0, I), x_t = q(x0, t, eps); with self-conditioning, with probability p
a no-grad pass on [x_t, 0] gives x0_sc = clamp(x0(o), -1, 1), else x0_sc = 0; the loss is taken on the pass
with [x_t, x0_sc]. Validation uses stratified timesteps (t_i = i*bin + bin/2) and seeded noise, so the
early-stopping signal does not wander with the random draws.

The validation loss is dominated by the image channel: lesions are a fraction of a percent of the pixels.
So validation also scores the mask channel alone: on the validation lesion slices, noised to a few fixed
timesteps (training.mask_dice_timesteps), the lesion Dice of the x0 estimate's mask (> 0) against the true
lesion, pooled over the epoch. It stays 0 while the network answers "no lesion anywhere", and rises once
the mask channel starts to work.

At small t the noisy input itself still holds the true mask, so a network that copies its input scores well
without having learnt anything: beside each mask_dice_t<t>, input_dice_t<t> is what the rescaled input alone
scores (the mask channel of x_t / sqrt(alpha_bar_t), thresholded the same way, on the same slices and noise).
Only the estimate's score above the input's is the network's own.

Under DDP (training.devices = W > 1) each step is the single-process step on the effective batch: rank r holds
rows r, r + W, ... of it (data.EpochSampler), and every random number of the step (CFG dropout, t, eps, the
self-conditioning coin) is drawn for all W * b rows from the global RNG, which EpochSeeds seeds alike on every
rank, and the rank keeps its rows. Upstream's ranks each drew b rows from identically seeded RNGs, so their
different images got the same timesteps and noise. Validation deals whole batches to ranks (data.ShardedBatches),
sums losses and mask-Dice pixel counts per rank and reduces the sums: the epoch's numbers are the single-process
ones whatever the world size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning.pytorch as pl
import torch

from slimdiff.config import ConfigError
from slimdiff.diffusion.schedule import Diffusion
from slimdiff.losses.lp import DiffusionLoss
from slimdiff.model.conditioning import null_token_offset
from slimdiff.model.factory import build_denoiser


class DiffusionModule(pl.LightningModule):
    def __init__(self, run_cfg: dict, data_info: dict):
        super().__init__()
        self.save_hyperparameters({"run_cfg": run_cfg, "data_info": data_info})
        self.run_cfg, self.data_info = run_cfg, data_info
        sc = run_cfg["self_conditioning"]
        self.self_cond = sc["enabled"]
        self.net = build_denoiser(
            run_cfg["model"], self.self_cond, data_info["z_bins"], data_info["z_range"], data_info["image_size"]
        )
        d = run_cfg["diffusion"]
        self.diffusion = Diffusion(d["timesteps"], d["prediction"], d["clip"])
        self.criterion = DiffusionLoss(run_cfg["loss"])
        self.mask_dice_timesteps = [int(t) for t in run_cfg["training"]["mask_dice_timesteps"]]
        # Single-process validation batches of the epoch (data.ShardedBatches); the runner sets it under DDP.
        self.val_batches = 0
        if any(t >= d["timesteps"] for t in self.mask_dice_timesteps):
            raise ConfigError(
                f"training.mask_dice_timesteps {self.mask_dice_timesteps}: each must be below "
                f"diffusion.timesteps ({d['timesteps']})"
            )

    def forward(self, x_t, t, tokens, x0_sc=None):
        return self.net(x_t, t, tokens, x0_sc)

    @property
    def _ranks(self) -> tuple[int, int]:
        """(this rank, world size); (0, 1) outside a Trainer."""
        trainer = self._trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _draw(self, make: Callable[[tuple[int, ...]], torch.Tensor], shape: tuple[int, ...]) -> torch.Tensor:
        """`make(shape)` drawn for the effective batch (dim 0 times the world size), this rank's rows kept."""
        rank, world = self._ranks
        if world == 1:
            return make(shape)
        return make((shape[0] * world, *shape[1:]))[rank::world]

    def _self_condition(self, x_t, t, tokens) -> torch.Tensor | None:
        if not self.self_cond:
            return None
        sc = self.run_cfg["self_conditioning"]
        b = x_t.shape[0]
        if sc["per_sample"]:
            use = self._draw(lambda s: torch.rand(s, device=x_t.device), (b,)) < sc["probability"]
        else:
            use = (torch.rand((), device=x_t.device) < sc["probability"]).expand(b)
        x0_sc = torch.zeros_like(x_t)
        if use.any():
            with torch.no_grad():
                est = self.diffusion.x0_from_output(self.net(x_t, t, tokens, None), x_t, t).clamp(-1, 1)
            x0_sc = torch.where(use.view(-1, 1, 1, 1), est.to(x_t.dtype), x0_sc)
        return x0_sc

    def _loss(self, x0, tokens, t, eps, x0_sc):
        x_t = self.diffusion.q_sample(x0, t, eps)
        out = self.net(x_t, t, tokens, x0_sc)
        x0_hat = self.diffusion.x0_from_output(out, x_t, t) if self.criterion.ffl["enabled"] else None
        return self.criterion(out, self.diffusion.target(x0, t, eps), x0, x0_hat)

    def training_step(self, batch, batch_idx):
        x0, tokens = batch
        if self.run_cfg["model"]["cfg_null_token"]:
            drop = self._draw(lambda s: torch.rand(s, device=tokens.device), tuple(tokens.shape))
            drop = drop < self.run_cfg["training"]["cfg_dropout"]
            null = null_token_offset(self.data_info["z_bins"])
            tokens = torch.where(drop, tokens + null, tokens)  # null, z-bin kept
        t = self._draw(lambda s: torch.randint(0, self.diffusion.timesteps, s, device=x0.device), (x0.shape[0],))
        eps = self._draw(lambda s: torch.randn(s, device=x0.device, dtype=x0.dtype), tuple(x0.shape))
        x0_sc = self._self_condition(self.diffusion.q_sample(x0, t, eps), t, tokens)
        loss, terms = self._loss(x0, tokens, t, eps, x0_sc)
        b, sync = x0.shape[0], self._ranks[1] > 1  # epoch means over all ranks (log.csv reduces its own)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=b, sync_dist=sync)
        for k, v in terms.items():
            self.log(f"train/{k}", v, on_step=False, on_epoch=True, batch_size=b, sync_dist=sync)
        for name, s in self.criterion.log_vars().items():  # Kendall weighting: the learned log-variances
            self.log(f"train/log_var_{name}", s, on_step=False, on_epoch=True, batch_size=b, sync_dist=sync)
        return loss

    def on_validation_epoch_start(self) -> None:
        # Sums over this rank's batches, reduced across ranks at the epoch's end: the losses weighted by batch
        # size (and the slices), and per timestep [lesion pixels predicted and true, predicted, true] for the x0
        # estimate and for the rescaled noisy input alone (the copy-the-input reference).
        self._val_sums: dict[str, torch.Tensor] = {}
        self._val_n = torch.zeros((), dtype=torch.float64)
        self._dice_counts = {t: torch.zeros(3, dtype=torch.float64) for t in self.mask_dice_timesteps}
        self._input_dice_counts = {t: torch.zeros(3, dtype=torch.float64) for t in self.mask_dice_timesteps}

    def _global_val_batch(self, batch_idx: int) -> int | None:
        """The single-process index of this rank's validation batch `batch_idx`; None for a stand-in (the rank's
        turn fell past the last batch, data.ShardedBatches)."""
        rank, world = self._ranks
        if world == 1:
            return batch_idx
        g = batch_idx * world + rank
        return g if g < self.val_batches else None

    def validation_step(self, batch, batch_idx):
        g = self._global_val_batch(batch_idx)
        if g is None:
            return
        x0, tokens = batch
        b = x0.shape[0]
        width = self.diffusion.timesteps // b
        t = (torch.arange(b, device=x0.device) * width + width // 2).clamp(max=self.diffusion.timesteps - 1)
        gen = torch.Generator(device=x0.device).manual_seed(g)
        eps = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        x0_sc = torch.zeros_like(x0) if self.self_cond else None
        loss, terms = self._loss(x0, tokens, t, eps, x0_sc)
        for k, v in {"loss": loss, **terms}.items():
            self._val_sums[k] = self._val_sums.get(k, 0.0) + v.detach().double().cpu() * b
        self._val_n += b
        self._count_mask_overlap(x0, tokens, eps)

    def _count_mask_overlap(self, x0, tokens, eps) -> None:
        lesion = (x0[:, 1] > 0).flatten(1).any(1)
        if not lesion.any():
            return
        x0, tokens, eps = x0[lesion], tokens[lesion], eps[lesion]
        true = x0[:, 1] > 0
        for step in self.mask_dice_timesteps:
            t = torch.full((len(x0),), step, device=x0.device, dtype=torch.long)
            x_t = self.diffusion.q_sample(x0, t, eps)
            sc = torch.zeros_like(x0) if self.self_cond else None
            pred = self.diffusion.x0_from_output(self.net(x_t, t, tokens, sc), x_t, t)[:, 1] > 0
            self._dice_counts[step] += overlap_counts(pred, true)
            self._input_dice_counts[step] += overlap_counts(self.diffusion.rescaled_input(x_t, t)[:, 1] > 0, true)

    def _reduced(self, parts: list[torch.Tensor]) -> list[torch.Tensor]:
        """`parts` summed over the ranks (one all-reduce); as they are on one device."""
        if self._ranks[1] == 1:
            return parts
        flat = torch.cat([p.reshape(-1) for p in parts]).to(self.device)  # NCCL reduces CUDA tensors only
        flat = self.trainer.strategy.reduce(flat, reduce_op="sum").cpu()
        out, i = [], 0
        for p in parts:
            out.append(flat[i : i + p.numel()].reshape(p.shape))
            i += p.numel()
        return out

    def on_validation_epoch_end(self) -> None:
        keys = ["loss", *self._val_term_names()]
        sums = [torch.as_tensor(self._val_sums.get(k, 0.0), dtype=torch.float64) for k in keys]
        steps = list(self._dice_counts)
        counts = [self._dice_counts[t] for t in steps] + [self._input_dice_counts[t] for t in steps]
        reduced = self._reduced([*sums, self._val_n, *counts])
        sums, n, counts = reduced[: len(keys)], float(reduced[len(keys)]), reduced[len(keys) + 1 :]
        if n:
            for key, total in zip(keys, sums, strict=True):
                self.log(f"val/{key}", float(total) / n, prog_bar=key == "loss")
        for i, step in enumerate(steps):
            self.log(f"val/mask_dice_t{step}", pooled_dice(counts[i]))
            self.log(f"val/input_dice_t{step}", pooled_dice(counts[len(steps) + i]))

    def _val_term_names(self) -> list[str]:
        """The loss terms DiffusionLoss reports, known before any batch: a rank whose only batch was a stand-in
        must reduce the same list as the others."""
        names = ["lp_image", "lp_mask", *(["ffl"] if self.criterion.ffl["enabled"] else [])]
        unknown = sorted(set(self._val_sums) - {"loss", *names})
        if unknown:
            raise RuntimeError(f"loss terms {unknown} are not in the validation's list {names}: add them there")
        return names

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Checkpoints written before the closed-form schedule hold a CosineAnnealingLR state: keep its epoch
        # count and last rates, drop its T_max (the schedule's length now always comes from the config).
        for state in checkpoint.get("lr_schedulers", []):
            if "T_max" in state and "lr_lambdas" not in state:
                state.pop("T_max")
                state.pop("eta_min", None)
                state["lr_lambdas"] = [None] * len(state["base_lrs"])

    def on_train_start(self) -> None:
        # A resumed run gets its optimizer's rate back as the checkpoint's schedule left it; if --max-epochs
        # changed, that is the old length's rate. Set it from this run's schedule at the epoch reached.
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            for group, base, factor in zip(sched.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas, strict=True):
                group["lr"] = base * factor(sched.last_epoch)

    def configure_optimizers(self):
        tr = self.run_cfg["training"]
        # The fused kernel (CPU and CUDA): one pass over each tensor, not a dozen ops per tensor (CPU, small model:
        # 1.3 instead of 6-7 ms per step). Lightning's mixed precision (bf16-mixed, 16-mixed) refuses gradient
        # clipping with a fused optimizer (a fused step unscales fp16 gradients itself, after the clip would have
        # seen them scaled): those take the multi-tensor (foreach) kernel.
        mixed = str(self.trainer.precision).endswith("-mixed") if self._trainer is not None else False
        fused = self.device.type in ("cpu", "cuda") and not (mixed and tr["grad_clip"] > 0)
        opt = torch.optim.AdamW(
            self.parameters(), lr=tr["lr"], weight_decay=tr["weight_decay"], fused=fused or None, foreach=not fused
        )
        sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr_factor(tr["max_epochs"], tr["lr"], tr["lr_min"]))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def overlap_counts(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """[pixels predicted and true, predicted, true] of boolean masks, as float64 on the CPU (for pooled_dice)."""
    return torch.stack([(pred & true).sum(), pred.sum(), true.sum()]).double().cpu()


def pooled_dice(counts: torch.Tensor) -> float:
    """Dice from pixel counts [predicted and true, predicted, true] summed over many slices (NaN: nothing)."""
    both, pred, true = (float(c) for c in counts)
    return 2 * both / (pred + true) if pred + true else float("nan")


def cosine_lr_factor(max_epochs: int, lr: float, lr_min: float):
    """Cosine annealing from lr to lr_min over max_epochs, in closed form, as a LambdaLR factor.

    Closed form rather than torch's CosineAnnealingLR: that one keeps T_max in its state, so a run resumed with
    a larger --max-epochs kept the old length and its LR rose again past the old end. A LambdaLR closure is not
    stored in the checkpoint, so a resumed run follows the schedule of its own (new) length from the epoch it
    reached, exactly as a run trained with that length from scratch. Same values as CosineAnnealingLR otherwise.
    """
    floor = lr_min / lr

    def factor(epoch: int) -> float:
        progress = min(epoch, max_epochs) / max_epochs
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
