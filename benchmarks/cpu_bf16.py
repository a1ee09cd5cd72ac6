"""float32 against bf16 autocast on this CPU, and the sampling batch it runs fastest, for the paper's model at
160x160 (run on demand, not a test).

    python benchmarks/cpu_bf16.py [--threads 1] [--batch 4] [--sampling-batches 4 8 16 32] [--out PAGE]

The pilot computes in the paper's GPU precision (bf16) on a CPU too, because a CPU with native bf16 (AMX,
AVX512-BF16) runs it several times faster than float32; this measures by how much, on this machine. On a CPU
without native bf16 it is emulated, far slower than float32 (the pilot computes in float32 there), and is not
measured unless --emulated-bf16 asks for it. Times per sample: a sampling forward pass (inference mode,
self-conditioning input, channels_last, the allocator tuned, as rule generate runs it) and a training step
(forward, backward, AdamW), the best of `--repeats` after one warm-up. --sampling-batches adds the per-sample
time of a sampling forward by batch size, in the dtype the pilot samples in on this CPU (the batch it picks:
slimdiff.pilot.CPU_SAMPLING_BATCH). The page (default: docs/results/cpu-bf16.md on a CPU with native bf16,
docs/results/cpu-float32.md on one without) is stamped with the commit, the CPU and the command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from slimdiff.allocator import keep_freed_memory
from slimdiff.config import load_config
from slimdiff.generation.sampling import cpu_has_native_bf16
from slimdiff.io import write_text
from slimdiff.model.factory import build_denoiser, count_parameters, use_channels_last
from slimdiff.pilot import CPU_SAMPLING_BATCH, machine_stamp

REPO = Path(__file__).resolve().parents[1]


def best_seconds(step, repeats: int) -> float:
    step()  # warm-up: oneDNN picks and caches its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def paper_model() -> tuple[torch.nn.Module, tuple[int, int]]:
    torch.manual_seed(0)
    cfg = load_config(REPO / "config" / "paper.yaml")
    size = tuple(cfg["data"]["cache"]["roi_size"][:2])
    return use_channels_last(build_denoiser(cfg["model"], True, 30, (34, 115), size)), size


def inputs(batch: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return torch.randn(batch, 2, *size), torch.full((batch,), 500), torch.zeros(batch, dtype=torch.long)


def autocast(dtype: str) -> dict:
    return {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": dtype == "bfloat16"}


def sampling_seconds(net, size, batch: int, dtype: str, repeats: int) -> float:
    x, t, tokens = inputs(batch, size)

    def forward() -> None:
        with torch.inference_mode(), torch.autocast(**autocast(dtype)):
            net(x, t, tokens, x)

    return best_seconds(forward, repeats) / batch


def training_seconds(net, size, batch: int, dtype: str, repeats: int) -> float:
    x, t, tokens = inputs(batch, size)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=True)

    def train_step() -> None:
        with torch.autocast(**autocast(dtype)):
            loss = net(x, t, tokens, x).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()

    return best_seconds(train_step, repeats) / batch


def measure(args: argparse.Namespace, dtypes: list[str]) -> dict:
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as rule generate and training run
    net, size = paper_model()
    out: dict = {"parameters": count_parameters(net), "by_batch": {}}
    for dtype in dtypes:
        out[f"sampling_{dtype}"] = sampling_seconds(net, size, args.batch, dtype, args.repeats)
        out[f"training_{dtype}"] = training_seconds(net, size, args.batch, dtype, args.repeats)
    pilot_dtype = "bfloat16" if cpu_has_native_bf16() else "float32"
    for batch in args.sampling_batches:
        out["by_batch"][batch] = sampling_seconds(net, size, batch, pilot_dtype, args.repeats)
    out["pilot_dtype"] = pilot_dtype
    return out


def page(r: dict, args: argparse.Namespace, dtypes: list[str]) -> str:
    stamp = machine_stamp()
    speed_up = ["speed-up"] if len(dtypes) > 1 else []
    lines = [
        "# float32 against bf16 autocast on a CPU, and the sampling batch: the paper's model at 160x160",
        "",
        f"- command: `{args.command}`",
        f"- commit {stamp.get('commit')}, {stamp.get('date')}",
        f"- CPU: {stamp.get('cpu')}, {stamp.get('cores')} cores, native bf16: {cpu_has_native_bf16()}; torch "
        f"{torch.__version__}; {args.threads} thread(s)",
        f"- model: {r['parameters']:,} parameters (config/paper.yaml), channels_last",
        "",
        "| " + " | ".join([f"seconds per sample, batch {args.batch}", *dtypes, *speed_up]) + " |",
        "|---|" + "---:|" * (len(dtypes) + len(speed_up)),
    ]
    for what in ("sampling", "training"):
        cells = [f"{r[f'{what}_{d}']:.3f}" for d in dtypes]
        if len(dtypes) > 1:
            cells.append(f"{r[f'{what}_float32'] / r[f'{what}_bfloat16']:.1f}")
        lines.append(f"| {what} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Sampling: one forward pass in inference mode (a DDIM step of rule generate). Training: forward, backward "
        "and AdamW. The pilot (config/pilot.yaml) computes in bf16 where the CPU has it natively, in float32 "
        + ("elsewhere." if len(dtypes) > 1 else "here: bf16 would be emulated (not measured; --emulated-bf16)."),
    ]
    if r["by_batch"]:
        best = min(r["by_batch"], key=r["by_batch"].get)
        lines += [
            "",
            f"| sampling batch | seconds per sample ({r['pilot_dtype']}) |",
            "|---:|---:|",
            *(f"| {b} | {s:.3f} |" for b, s in r["by_batch"].items()),
            "",
            f"Fastest here: batch {best}. Without a GPU the pilot samples at batch "
            f"{CPU_SAMPLING_BATCH[r['pilot_dtype']]} in {r['pilot_dtype']} (slimdiff.pilot.CPU_SAMPLING_BATCH); "
            "the paper's 32 is a GPU's batch.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sampling-batches", type=int, nargs="*", default=[])
    p.add_argument("--emulated-bf16", action="store_true", help="measure bf16 on a CPU without it (slow)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    args.command = " ".join(["python benchmarks/cpu_bf16.py", *(sys.argv[1:] if argv is None else argv)])
    native = cpu_has_native_bf16()
    dtypes = ["float32", "bfloat16"] if native or args.emulated_bf16 else ["float32"]
    out = args.out or REPO / "docs" / "results" / ("cpu-bf16.md" if native else "cpu-float32.md")
    text = page(measure(args, dtypes), args, dtypes)
    write_text(out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
