"""Training throughput and peak memory of the denoiser (run on demand, not a test).

    python benchmarks/train_throughput.py [--device cpu|cuda|all] [--steps N] [--out FILE.json]

Measures full training steps (self-conditioning pass, loss, backward, grad clip, AdamW, EMA update) of
* the paper model (channels 64-128-256-256, attention at the two deepest levels) at 160x160, batch 16;
* the embedded default's small model (config/config.yaml) at 64x64, batch 16;
on the CPU and, when present, on CUDA (bf16 autocast, fused AdamW, EMA on the device; with and without
channels_last and torch.compile). Writes one JSON with steps/s, samples/s and peak memory per setting.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from slimdiff import io, provenance
from slimdiff.config import load_config, validate_config
from slimdiff.experiments import expand_runs
from slimdiff.model.factory import count_parameters
from slimdiff.training.module import DiffusionModule

REPO = Path(__file__).resolve().parents[1]


def run_config(which: str) -> tuple[dict, int]:
    if which == "paper":
        cfg = validate_config({})
        size = 160
    else:
        cfg = load_config(REPO / "config" / "config.yaml")
        size = cfg["data"]["cache"]["roi_size"][0]
    run = next(iter(expand_runs(dict(cfg, experiments=dict(cfg["experiments"], prediction=["x0"]))).values()))
    return run, size


def bench(which: str, device: str, steps: int, batch: int, channels_last: bool, compile_: bool) -> dict:
    run, size = run_config(which)
    n_bins = 30
    module = DiffusionModule(run, {"z_bins": n_bins, "z_range": [34, 115], "image_size": [size, size]}).to(device)
    if channels_last:
        module.net = module.net.to(memory_format=torch.channels_last)
    if compile_:
        module.net = torch.compile(module.net)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=1e-4, fused=device == "cuda")
    ema = AveragedModel(module.net, multi_avg_fn=get_ema_multi_avg_fn(0.999), use_buffers=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x0 = (torch.rand(batch, 2, size, size, generator=gen) * 2 - 1).to(device)
    if channels_last:
        x0 = x0.contiguous(memory_format=torch.channels_last)
    tokens = torch.randint(0, 2 * n_bins, (batch,), generator=gen).to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device == "cuda" else torch.autocast("cpu", enabled=False)
    )
    module.log = lambda *a, **k: None  # outside a Trainer

    def step():
        with autocast:
            loss = module.training_step((x0, tokens), 0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        ema.update_parameters(module.net)

    warmup = 3 if compile_ else 1
    for _ in range(warmup):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    peak = (
        torch.cuda.max_memory_allocated() / 2**20
        if device == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    return {
        "model": which,
        "parameters": count_parameters(module.net),
        "image_size": size,
        "batch": batch,
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {torch.get_num_threads()} threads",
        "precision": "bf16-mixed" if device == "cuda" else "32-true",
        "channels_last": channels_last,
        "compile": compile_,
        "seconds_per_step": round(seconds, 4),
        "steps_per_second": round(1 / seconds, 3),
        "samples_per_second": round(batch / seconds, 2),
        "peak_memory_mib": round(peak, 1),
        "peak_memory_kind": "cuda max_memory_allocated" if device == "cuda" else "process max RSS",
    }


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
