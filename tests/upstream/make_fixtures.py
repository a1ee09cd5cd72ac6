"""Build the upstream test fixtures with upstream's own code (run in the upstream environment: `make upstream-env`).

    .upstream-venv/bin/python tests/upstream/make_fixtures.py tests/data/upstream

For each case below: a tiny upstream model is trained for a few steps by upstream's own Lightning module and its
EMA callback (so raw and EMA weights differ), saved by Lightning as a real `.ckpt`, and upstream's own denoiser
and DDIM sampler are run on fixed inputs. tests/test_upstream_import.py converts each checkpoint and must match
those outputs. Nothing here is imported by the pipeline; the outputs are committed as test data.
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf
from src.diffusion.model.factory import DiffusionSampler
from src.diffusion.training.callbacks.epoch_callbacks import EMACallback
from src.diffusion.training.lit_modules import JSDDPMLightningModule
from src.diffusion.utils.zbin_priors import get_anatomical_priors_as_input, save_zbin_priors

SIZE, Z_BINS, Z_RANGE = 32, 4, (3, 26)
DDIM_STEPS = 6

# One upstream training config, written out key by key (slim-diff 1.0.0 ships no YAML inside its wheel).
BASE = {
    "experiment": {"seed": 33},
    "data": {
        "cache_dir": None,  # set per case
        "slice_sampling": {"z_range": list(Z_RANGE)},
        "transforms": {"roi_size": [SIZE, SIZE, SIZE]},
    },
    "conditioning": {
        "z_bins": Z_BINS,
        "use_sinusoidal": True,
        "max_z": 31,
        "cfg": {"enabled": False, "null_token": 2 * Z_BINS, "dropout_prob": 0.1},
    },
    "model": {
        "type": "DiffusionModelUNet",
        "spatial_dims": 2,
        "in_channels": 2,
        "out_channels": 2,
        "channels": [8, 16],
        "attention_levels": [False, True],
        "num_res_blocks": 1,
        "num_head_channels": 8,
        "norm_num_groups": 4,
        "resblock_updown": False,
        "use_class_embedding": True,
        "with_conditioning": False,
        "dropout": 0.0,
        "anatomical_conditioning": False,
        "anatomical_conditioning_method": "concat",
    },
    "scheduler": {
        "type": "DDPM",
        "num_train_timesteps": 1000,
        "schedule": "cosine",
        "prediction_type": "sample",
        "clip_sample": True,
        "clip_sample_range": 1.0,
    },
    "sampler": {"type": "DDIM", "num_inference_steps": DDIM_STEPS, "eta": 0.0, "guidance_scale": 1.0},
    "training": {
        "self_conditioning": {"enabled": True, "probability": 0.5},
        "optimizer": {"type": "AdamW", "lr": 3e-3, "weight_decay": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8},
        "lr_scheduler": {"type": "CosineAnnealingLR", "T_max": None, "eta_min": 1e-6},
        "max_epochs": 1,
        "batch_size": 4,
        "ema": {"enabled": True, "decay": 0.6, "export_to_checkpoint": True},
    },
    "loss": {
        "mode": "mse_lp_norm",
        "lp_norm": {"p": 1.5},
        "uncertainty_weighting": {"enabled": False, "initial_log_vars": [0.0, 0.0], "learnable": False},
        "lesion_weighted_image": {"enabled": False, "lesion_weight": 1.0, "background_weight": 1.0},
        "lesion_weighted_mask": {"enabled": False, "lesion_weight": 1.0, "background_weight": 1.0},
    },
    "postprocessing": {
        "zbin_priors": {"enabled": False, "priors_filename": "zbin_priors_brain_roi.npz", "apply_to": []}
    },
}

# name -> changes to BASE (dotted keys). Covers every prediction type, self-conditioning on and off,
# classifier-free guidance's null embedding, and the concat anatomical prior.
CASES = {
    "x0_sc": {},
    "eps_nosc": {"scheduler.prediction_type": "epsilon", "training.self_conditioning.enabled": False},
    "v_sc_cfg": {"scheduler.prediction_type": "v_prediction", "conditioning.cfg.enabled": True},
    "x0_prior": {
        "model.anatomical_conditioning": True,
        "postprocessing.zbin_priors.enabled": True,
        "postprocessing.zbin_priors.apply_to": ["training"],
    },
}
# The EMA export is optional upstream: this case keeps its EMA only in the callback state.
EMA_IN_CALLBACK_ONLY = {"eps_nosc"}


def case_config(name: str, cache_dir: Path) -> dict:
    cfg = copy.deepcopy(BASE)
    cfg["data"]["cache_dir"] = str(cache_dir)
    for dotted, value in CASES[name].items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        node[leaf] = value
    if name in EMA_IN_CALLBACK_ONLY:
        cfg["training"]["ema"]["export_to_checkpoint"] = False
    return cfg


def write_priors(cache_dir: Path) -> np.ndarray:
    """A disk per z-bin, growing with the bin, in upstream's priors file format."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    rois = np.stack([(yy - SIZE / 2) ** 2 + (xx - SIZE / 2) ** 2 < (6 + 2 * b) ** 2 for b in range(Z_BINS)])
    cache_dir.mkdir(parents=True, exist_ok=True)
    save_zbin_priors({b: rois[b] for b in range(Z_BINS)}, {"z_bins": Z_BINS}, cache_dir / "zbin_priors_brain_roi.npz")
    return rois


def batches(n: int, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        image = torch.rand(4, 1, SIZE, SIZE, generator=g) * 2 - 1
        mask = torch.where(torch.rand(4, 1, SIZE, SIZE, generator=g) > 0.9, 1.0, -1.0)
        z = torch.randint(0, Z_BINS, (4,), generator=g)
        cls = torch.randint(0, 2, (4,), generator=g)
        out.append({"image": image, "mask": mask, "token": z + Z_BINS * cls, "metadata": {"z_bin": z.tolist()}})
    return out


def collate(items):
    return items[0]


def train_and_save(cfg: dict, ckpt: Path) -> JSDDPMLightningModule:
    pl.seed_everything(cfg["experiment"]["seed"], workers=False)
    module = JSDDPMLightningModule(OmegaConf.create(cfg))
    ema = cfg["training"]["ema"]
    callback = EMACallback(decay=ema["decay"], export_to_checkpoint=ema["export_to_checkpoint"])
    trainer = pl.Trainer(
        max_steps=3,
        limit_val_batches=0,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    loader = torch.utils.data.DataLoader(batches(3, seed=1), batch_size=1, collate_fn=collate)
    trainer.fit(module, loader)
    trainer.save_checkpoint(ckpt)
    module.model.load_state_dict(callback.get_ema_state_dict(), strict=True)  # what the import must reproduce
    return module.eval()


@torch.no_grad()
def reference_outputs(module: JSDDPMLightningModule, cfg: dict, rois: np.ndarray | None) -> dict:
    g = torch.Generator().manual_seed(7)
    in_ch = module.model.conv_in.conv.in_channels
    z = torch.tensor([0, 1, 3])
    tokens = z + Z_BINS * torch.tensor([0, 1, 1])
    if cfg["conditioning"]["cfg"]["enabled"]:
        tokens[2] = 2 * Z_BINS  # the null token
    net_in = torch.randn(3, in_ch, SIZE, SIZE, generator=g)
    if rois is not None:
        net_in[:, -1:] = get_anatomical_priors_as_input(z.tolist(), {b: rois[b] for b in range(Z_BINS)})
    t = torch.tensor([0, 450, 999])
    out = module.model(net_in, timesteps=t, class_labels=tokens)
    sampler = DiffusionSampler(module.model, module.inferer, OmegaConf.create(cfg), device="cpu")
    x_T = torch.randn(3, 2, SIZE, SIZE, generator=g)
    prior = None if rois is None else get_anatomical_priors_as_input(z.tolist(), {b: rois[b] for b in range(Z_BINS)})
    sample_tokens = z + Z_BINS * torch.tensor([0, 1, 1])
    samples = sampler.sample(sample_tokens, x_T=x_T, shape=tuple(x_T.shape), anatomical_mask=prior)
    return {
        "net_in": net_in,
        "t": t,
        "tokens": tokens,
        "net_out": out,
        "x_T": x_T,
        "sample_tokens": sample_tokens,
        "ddim_steps": torch.tensor(DDIM_STEPS),
        "samples": samples,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import monai

    versions = {
        "slim-diff": "1.0.0",
        "monai": monai.__version__,
        "torch": torch.__version__,
        "lightning": pl.__version__,
    }
    for name in CASES:
        cache = args.out / f"{name}_priors"
        cfg = case_config(name, cache)
        rois = write_priors(cache) if cfg["model"]["anatomical_conditioning"] else None
        module = train_and_save(cfg, args.out / f"{name}.ckpt")
        torch.save(reference_outputs(module, cfg, rois), args.out / f"{name}_reference.pt")
        (args.out / f"{name}.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(cfg)))
        print(name, "done")
    (args.out / "versions.json").write_text(json.dumps(versions, indent=1) + "\n")


if __name__ == "__main__":
    main()
