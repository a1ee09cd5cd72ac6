"""Training throughput and peak memory of the denoiser (run on demand, not a test).

    python benchmarks/train_throughput.py [--device cpu|cuda|all] [--steps N] [--out FILE.json]

Measures the training step slimdiff-train runs: DiffusionModule.training_step (self-conditioning pass, loss)
inside a Lightning Trainer with the run's precision, gradient clipping, the module's configure_optimizers
(fused AdamW and the cosine schedule) and the EMAWeightAveraging callback, on synthetic batches, of
* the paper model (config/paper.yaml: channels 64-128-256-256, attention at the two deepest levels) at 160x160,
  batch 16;
* the embedded default's small model (config/config.yaml) at 64x64, batch 16;
on the CPU and, when present, on CUDA (bf16-mixed, EMA on the device; with and without channels_last and
torch.compile). The first steps (1, or 3 with torch.compile) are warm-up and not timed. Writes one JSON with
steps/s, samples/s and peak memory per setting.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch.utils.data import DataLoader

from slimdiff import io, provenance
from slimdiff.config import load_config
from slimdiff.data.slices import token
from slimdiff.experiments import expand_runs
from slimdiff.model.factory import count_parameters, use_channels_last
from slimdiff.training.module import DiffusionModule
from slimdiff.training.runner import resolve_precision

REPO = Path(__file__).resolve().parents[1]


def run_config(which: str) -> tuple[dict, int]:
    cfg = load_config(REPO / "config" / ("paper.yaml" if which == "paper" else "config.yaml"))
    size = cfg["data"]["cache"]["roi_size"][0]
    run = expand_runs(cfg)["x0_lp1.5_sc0.5"]  # the paper's recommended model, in both configs
    return run, size


class StepTimer(pl.Callback):
    """Wall time from the start of batch `warmup` to the end of batch `last`, EMA update included.

    Listed after EMAWeightAveraging: Lightning calls the callbacks' hooks in their order.
    """

    def __init__(self, warmup: int, last: int, cuda: bool):
        self.warmup, self.last, self.cuda = warmup, last, cuda
        self.start = self.end = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.warmup:
            if self.cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if batch_idx == self.last:
            if self.cuda:
                torch.cuda.synchronize()
            self.end = time.perf_counter()


def time_training_steps(
    run: dict, size: int, device: str, steps: int, batch: int, channels_last: bool, compile_: bool, n_bins: int = 30
) -> dict:
    """Seconds per training step of `run` at size x size, as train_run sets it up (without the data loading)."""
    tr = run["training"]
    module = DiffusionModule(run, {"z_bins": n_bins, "z_range": [34, 115], "image_size": [size, size]})
    if channels_last:
        module.net = use_channels_last(module.net)
    if compile_:
        module.net = torch.compile(module.net)
    warmup = 3 if compile_ else 1
    gen = torch.Generator().manual_seed(0)
    z_bins = torch.randint(0, n_bins, (warmup + steps, batch), generator=gen).numpy()
    classes = torch.randint(0, 2, (warmup + steps, batch), generator=gen).numpy()
    batches = [
        (torch.rand(batch, 2, size, size, generator=gen) * 2 - 1, torch.from_numpy(token(z, c, n_bins)).long())
        for z, c in zip(z_bins, classes, strict=True)
    ]
    timer = StepTimer(warmup, warmup + steps - 1, device == "cuda")
    precision = resolve_precision(tr["precision"], device)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            precision=precision,
            max_epochs=1,
            max_steps=warmup + steps,
            gradient_clip_val=tr["grad_clip"],
            callbacks=[EMAWeightAveraging(decay=tr["ema_decay"]), timer],
            logger=False,
            enable_checkpointing=False,
            default_root_dir=root,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            deterministic=True if device == "cpu" else "warn",
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(batches, batch_size=None, pin_memory=device == "cuda"))
    seconds = (timer.end - timer.start) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "parameters": count_parameters(module.net),
        "image_size": size,
        "batch": batch,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "precision": precision,
        "channels_last": channels_last,
        "compile": compile_,
        "seconds_per_step": round(seconds, 4),
        "steps_per_second": round(1 / seconds, 3),
        "samples_per_second": round(batch / seconds, 2),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if device == "cuda" else "process max RSS",
    }


def bench(which: str, device: str, steps: int, batch: int, channels_last: bool, compile_: bool) -> dict:
    run, size = run_config(which)
    return {"model": which, **time_training_steps(run, size, device, steps, batch, channels_last, compile_)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 3 on CPU, 20 on CUDA)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--models", default="small,paper")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "train_throughput.json"))
    args = p.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results = []
    for device in devices:
        variants = [(False, False)] if device == "cpu" else [(False, False), (True, False), (True, True)]
        # Cheap settings first, and the file rewritten after each, so a run cut short still reports them.
        for channels_last, compile_ in variants:
            for which in args.models.split(","):
                steps = args.steps or (3 if device == "cpu" else 20)
                r = bench(which, device, steps, args.batch, channels_last, compile_)
                print(json.dumps(r), flush=True)
                results.append(r)
                payload = {"results": results, "versions": provenance.versions(), "created": provenance.timestamp()}
                io.write_json(out, payload)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
