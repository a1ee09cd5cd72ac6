"""float32 against bf16 autocast on this CPU, the sampling batch it runs fastest, and the memory layout it
trains fastest in, for the paper's model at 160x160 (run on demand, not a test).

    python benchmarks/cpu_bf16.py [--threads 1] [--batch 4] [--sampling-batches 4 8 16 32] [--layouts]
                                  [--out PAGE]

The pilot computes in the paper's GPU precision (bf16) on a CPU too, because a CPU with native bf16 (AMX,
AVX512-BF16) runs it several times faster than float32; this measures by how much, on this machine. On a CPU
without native bf16 it is emulated, far slower than float32 (the pilot computes in float32 there), and is not
measured unless --emulated-bf16 asks for it. Times per sample: a sampling forward pass (inference mode,
self-conditioning input, channels_last, the allocator tuned, as rule generate runs it) and a training step
(forward, backward, AdamW), the best of `--repeats` after one warm-up. --sampling-batches adds the per-sample
time of a sampling forward by batch size, in the dtype the pilot samples in on this CPU (the batch it picks:
slimdiff.pilot.CPU_SAMPLING_BATCH). --layouts measures both again with contiguous (NCHW) weights and
activations against channels_last, and how close each comes to this core's matrix-multiply throughput (the
model's floating-point operations per sample, counted by torch's FlopCounterMode, over the measured time): how
much of the pilot's CPU time any kernel tuning could still win. The page (default: docs/results/cpu-bf16.md on
a CPU with native bf16, docs/results/cpu-float32.md on one without) is stamped with the commit, the CPU and the
command.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from slimdiff.allocator import keep_freed_memory
from slimdiff.config import load_config
from slimdiff.device import cpu_has_native_bf16
from slimdiff.io import write_text
from slimdiff.model.factory import build_denoiser, count_parameters, use_channels_last
from slimdiff.pilot import CPU_SAMPLING_BATCH, CPU_TRAINING_CHANNELS_LAST, machine_stamp

REPO = Path(__file__).resolve().parents[1]


def best_seconds(step, repeats: int) -> float:
    step()  # warm-up: oneDNN picks and caches its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def paper_model(channels_last: bool = True) -> tuple[torch.nn.Module, tuple[int, int]]:
    torch.manual_seed(0)
    cfg = load_config(REPO / "config" / "paper.yaml")
    size = tuple(cfg["data"]["cache"]["roi_size"][:2])
    net = build_denoiser(cfg["model"], True, 30, (34, 115), size)
    return (use_channels_last(net) if channels_last else net), size


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


def gflop_per_sample(net, size, training: bool) -> float:
    """The network's floating-point operations per sample (a multiply-add counts 2): a forward pass, or a forward
    and backward pass (the optimiser's elementwise update is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    x, t, tokens = inputs(1, size)
    with FlopCounterMode(display=False) as counter:
        if training:
            net(x, t, tokens, x).float().pow(2).mean().backward()
        else:
            with torch.inference_mode():
                net(x, t, tokens, x)
    net.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def matmul_gflops(dtype: str, repeats: int, n: int = 2048) -> float:
    """This core's (these threads') practical peak: a large square matrix multiply, GFLOP/s."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    if dtype == "bfloat16":
        a, b = a.bfloat16(), b.bfloat16()
    return 2 * n**3 / best_seconds(lambda: a @ b, max(repeats, 3)) / 1e9


def measure_layouts(args: argparse.Namespace, dtype: str) -> dict:
    """Sampling and training per sample for each memory layout, with the work they do (GFLOP per sample)."""
    out: dict = {"matmul_gflops": matmul_gflops(dtype, args.repeats), "threads": args.threads}
    for layout in ("channels_last", "contiguous"):
        net, size = paper_model(channels_last=layout == "channels_last")
        out[layout] = {
            "sampling": sampling_seconds(net, size, args.batch, dtype, args.repeats),
            "training": training_seconds(net, size, args.batch, dtype, args.repeats),
        }
    net, size = paper_model(channels_last=False)
    out["gflop"] = {"sampling": gflop_per_sample(net, size, False), "training": gflop_per_sample(net, size, True)}
    return out


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
    if args.layouts:
        out["layouts"] = measure_layouts(args, pilot_dtype)
    return out


def layout_lines(r: dict, batch: int) -> list[str]:
    lay, dtype = r["layouts"], r["pilot_dtype"]
    peak = lay["matmul_gflops"]
    lines = [
        "",
        f"| {dtype}, batch {batch} | GFLOP per sample | layout | seconds per sample | GFLOP/s | of matmul |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for what in ("sampling", "training"):
        for layout in ("channels_last", "contiguous"):
            sec = lay[layout][what]
            rate = lay["gflop"][what] / sec
            lines.append(
                f"| {what} | {lay['gflop'][what]:.1f} | {layout} | {sec:.3f} | {rate:.1f} | {rate / peak:.0%} |"
            )
    faster = min(("channels_last", "contiguous"), key=lambda k: lay[k]["training"])
    pilot_trains = "channels_last" if CPU_TRAINING_CHANNELS_LAST[dtype] else "contiguous"
    lines += [
        "",
        f"This core's matrix multiply ({dtype}, 2048 x 2048, {lay['threads']} thread(s)): {peak:.1f} GFLOP/s. "
        "GFLOP counted by torch's FlopCounterMode (convolutions, matrix multiplies and attention; a multiply-add "
        "counts 2; training: forward and backward, not AdamW's update), so a share near 100 % leaves nothing for "
        f"kernel tuning to win. Training ran fastest here in {faster}; without a GPU the pilot trains in "
        f"{pilot_trains} in {dtype} (slimdiff.pilot.CPU_TRAINING_CHANNELS_LAST) and samples in channels_last.",
    ]
    return lines


def page(r: dict, args: argparse.Namespace, dtypes: list[str]) -> str:
    stamp = machine_stamp()
    speed_up = ["speed-up"] if len(dtypes) > 1 else []
    lines = [
        "# float32 against bf16 autocast on a CPU, the sampling batch and the memory layout: the paper's model at "
        "160x160",
        "",
        f"- command: `{args.command}`",
        f"- commit {stamp.get('commit')}, {stamp.get('date')}",
        f"- CPU: {stamp.get('cpu')}, {stamp.get('cores')} cores, native bf16: {cpu_has_native_bf16()}; torch "
        f"{torch.__version__}; {args.threads} thread(s)",
        f"- model: {r['parameters']:,} parameters (config/paper.yaml), channels_last"
        + (" (both layouts in the last table)" if "layouts" in r else ""),
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
    if "layouts" in r:
        lines += layout_lines(r, args.batch)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sampling-batches", type=int, nargs="*", default=[])
    p.add_argument("--layouts", action="store_true", help="channels_last against contiguous, and the GFLOP/s")
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
