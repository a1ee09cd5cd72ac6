"""float32 against bf16 autocast on this CPU, for the paper's model at 160x160 (run on demand, not a test).

    python benchmarks/cpu_bf16.py [--threads 1] [--batch 4] [--out docs/results/cpu-bf16.md]

The pilot computes in the paper's GPU precision (bf16) on a CPU too, because a CPU with native bf16 (AMX,
AVX512-BF16) runs it several times faster than float32; this measures by how much, on this machine. Times per
sample: a sampling forward pass (inference mode, self-conditioning input, channels_last, as rule generate runs
it) and a training step (forward, backward, AdamW), the best of `--repeats` after one warm-up. The page it
writes is stamped with the commit, the CPU and the command.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from slimdiff.config import load_config
from slimdiff.generation.sampling import cpu_has_native_bf16
from slimdiff.io import write_text
from slimdiff.model.factory import build_denoiser, count_parameters, use_channels_last
from slimdiff.pilot import machine_stamp

REPO = Path(__file__).resolve().parents[1]


def best_seconds(step, repeats: int) -> float:
    step()  # warm-up: oneDNN picks and caches its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def measure(threads: int, batch: int, repeats: int) -> dict[str, float]:
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    cfg = load_config(REPO / "config" / "paper.yaml")
    size = cfg["data"]["cache"]["roi_size"][:2]
    net = use_channels_last(build_denoiser(cfg["model"], True, 30, (34, 115), size))
    x = torch.randn(batch, 2, *size)
    t, tokens = torch.full((batch,), 500), torch.zeros(batch, dtype=torch.long)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4, foreach=True)
    out = {"parameters": count_parameters(net)}
    for dtype in ("float32", "bfloat16"):
        autocast = {"device_type": "cpu", "dtype": torch.bfloat16, "enabled": dtype == "bfloat16"}

        def forward(autocast: dict = autocast) -> None:
            with torch.inference_mode(), torch.autocast(**autocast):
                net(x, t, tokens, x)

        def train_step(autocast: dict = autocast) -> None:
            with torch.autocast(**autocast):
                loss = net(x, t, tokens, x).float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad()

        out[f"sampling_{dtype}"] = best_seconds(forward, repeats) / batch
        out[f"training_{dtype}"] = best_seconds(train_step, repeats) / batch
    return out


def page(r: dict[str, float], args: argparse.Namespace) -> str:
    stamp = machine_stamp()
    rows = [
        f"| {what} | {r[f'{what}_float32']:.3f} | {r[f'{what}_bfloat16']:.3f} | "
        f"{r[f'{what}_float32'] / r[f'{what}_bfloat16']:.1f} |"
        for what in ("sampling", "training")
    ]
    return "\n".join(
        [
            "# float32 against bf16 autocast on a CPU: the paper's model at 160x160",
            "",
            f"- command: `python benchmarks/cpu_bf16.py --threads {args.threads} --batch {args.batch}`",
            f"- commit {stamp.get('commit')}, {stamp.get('date')}",
            f"- CPU: {stamp.get('cpu')}, {stamp.get('cores')} cores, native bf16: {cpu_has_native_bf16()}; torch "
            f"{torch.__version__}; {args.threads} thread(s), batch {args.batch}",
            f"- model: {r['parameters']:,} parameters (config/paper.yaml), channels_last",
            "",
            "| seconds per sample | float32 | bf16 | speed-up |",
            "|---|---:|---:|---:|",
            *rows,
            "",
            "Sampling: one forward pass in inference mode (a DDIM step of rule generate). Training: forward, "
            "backward and AdamW. The pilot (config/pilot.yaml) computes in bf16 where the CPU has it natively.",
            "",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "cpu-bf16.md")
    args = p.parse_args(argv)
    text = page(measure(args.threads, args.batch, args.repeats), args)
    write_text(args.out, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
