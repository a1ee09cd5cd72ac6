"""DDP scaling of one training cell (run on demand, not a test): samples/s of the training step on 1 and 2 ranks.

    python benchmarks/ddp_scaling.py [--steps N] [--model small|paper] [--out docs/results/ddp-scaling.md]

CPU: the same effective batch (default 16) as 1 process x 2 threads against 2 ranks (gloo) x 1 thread x the
per-device batch 8 -- what `training.devices: 2` buys on a CPU with 2 cores, against the same cores given to
one process. CUDA (when present): per-device batch 16 on 1 device, and on 2 devices (effective 32, the
camera-ready cells) when there are 2; samples/s counts the effective batch.

Each setting runs in fresh processes (threads are fixed at start), the ranks started with torchrun's variables
and Lightning's DDPStrategy as slimdiff-train starts them (slimdiff.training.ddp), on synthetic batches of the
run's size: DiffusionModule.training_step (self-conditioning, loss), fused AdamW, gradient clipping and the EMA
callback, as benchmarks/train_throughput.py times one device. The first 2 steps are warm-up. Writes a
Markdown page stamped with the commit, the CPU model, the cores, the load average and the command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP = 2


def worker(args: argparse.Namespace) -> None:
    """One rank (or the single process): time `steps` training steps, rank 0 prints a JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EMAWeightAveraging
    from lightning.pytorch.plugins.environments import LightningEnvironment
    from lightning.pytorch.strategies import DDPStrategy
    from torch.utils.data import DataLoader

    sys.path.insert(0, str(Path(__file__).parent))
    from train_throughput import StepTimer, run_config

    from slimdiff.training.module import DiffusionModule
    from slimdiff.training.runner import resolve_precision

    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    run, size = run_config(args.model)
    tr = run["training"]
    pl.seed_everything(0, verbose=False)
    module = DiffusionModule(run, {"z_bins": 30, "z_range": [34, 115], "image_size": [size, size]})
    gen = torch.Generator().manual_seed(rank)
    batches = [
        (
            torch.rand(args.batch, 2, size, size, generator=gen) * 2 - 1,
            torch.randint(0, 60, (args.batch,), generator=gen),
        )
        for _ in range(WARMUP + args.steps)
    ]
    cuda = args.device == "cuda"
    timer = StepTimer(WARMUP, WARMUP + args.steps - 1, cuda)
    strategy = "auto"
    if world > 1:
        strategy = DDPStrategy(
            process_group_backend="nccl" if cuda else "gloo",
            cluster_environment=LightningEnvironment(),
            broadcast_buffers=False,
        )
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(
            accelerator="gpu" if cuda else "cpu",
            devices=world,
            strategy=strategy,
            use_distributed_sampler=False,
            precision=resolve_precision(tr["precision"], args.device),
            max_epochs=1,
            max_steps=WARMUP + args.steps,
            gradient_clip_val=tr["grad_clip"],
            callbacks=[EMAWeightAveraging(decay=tr["ema_decay"]), timer],
            logger=False,
            enable_checkpointing=False,
            default_root_dir=root,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            deterministic=not cuda,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(batches, batch_size=None, pin_memory=cuda))
    if rank == 0:
        seconds = (timer.end - timer.start) / args.steps
        effective = args.batch * world
        print(
            "RESULT "
            + json.dumps(
                {
                    "device": args.device,
                    "ranks": world,
                    "threads_per_rank": args.threads,
                    "batch_per_device": args.batch,
                    "effective_batch": effective,
                    "image_size": size,
                    "seconds_per_step": round(seconds, 4),
                    "samples_per_second": round(effective / seconds, 2),
                    "device_name": torch.cuda.get_device_name(0) if cuda else platform.processor() or "CPU",
                }
            ),
            flush=True,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setting(device: str, ranks: int, threads: int, batch: int, steps: int, model: str) -> dict:
    """Run one setting in fresh processes; the parsed result of rank 0."""
    cmd = [sys.executable, __file__, "--worker", "--device", device, "--threads", str(threads)]
    cmd += ["--batch", str(batch), "--steps", str(steps), "--model", model]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    base |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(ranks)}
    base |= {"NODE_RANK": "0", "OMP_NUM_THREADS": str(threads)}
    procs = [
        subprocess.Popen(
            cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for r in range(ranks)
    ]
    outs = [p.communicate(timeout=1200) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"{device} x {ranks} ranks failed:\n{err.decode()[-3000:]}")
    line = next(x for x in outs[0][0].decode().splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def commit() -> str:
    def git(*a: str) -> str:
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def page(rows: list[dict], notes: list[str], command: str, load: tuple[float, float]) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "# DDP scaling of one training cell",
        "",
        "Written by `benchmarks/ddp_scaling.py` (issue #28). Samples/s of the training step (self-conditioning, "
        "loss, AdamW, gradient clipping, EMA) on synthetic batches; the effective batch is per-device batch x ranks.",
        "",
        f"- commit: {commit()}",
        f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- CPU: {cpu_model()}, {cores} usable cores (os.cpu_count {os.cpu_count()})",
        f"- load average (1 min) before / after: {load[0]:.2f} / {load[1]:.2f}",
        f"- command: `{command}`",
        "",
        "| device | ranks x threads | batch per device | effective batch | image | s/step | samples/s | speed-up "
        "| runs (samples/s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    base = {}
    for r in rows:
        key = r["device"]
        base.setdefault(key, r["samples_per_second"])
        speedup = r["samples_per_second"] / base[key]
        lines.append(
            f"| {r['device']} ({r['device_name']}) | {r['ranks']} x {r['threads_per_rank']} | {r['batch_per_device']} "
            f"| {r['effective_batch']} | {r['image_size']}x{r['image_size']} | {r['seconds_per_step']} "
            f"| {r['samples_per_second']} | {speedup:.2f} | {', '.join(map(str, r.get('all', [])))} |"
        )
    lines += ["", *notes, ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16, help="effective batch on the CPU; per-device batch on CUDA")
    p.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    p.add_argument("--model", default="small", choices=["small", "paper"])
    p.add_argument("--repeats", type=int, default=3, help="runs per CPU setting, interleaved")
    p.add_argument("--out", default=str(REPO / "docs" / "results" / "ddp-scaling.md"))
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    import torch

    command = "python benchmarks/ddp_scaling.py " + " ".join(sys.argv[1:])
    load_before = os.getloadavg()[0]
    cpu_settings = [(1, 2, args.batch), (2, 1, args.batch // 2)]
    runs: dict[tuple, list[dict]] = {c: [] for c in cpu_settings}
    for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits both settings
        for ranks, threads, batch in cpu_settings:
            runs[(ranks, threads, batch)].append(setting("cpu", ranks, threads, batch, args.steps, args.model))
    rows = []
    for results in runs.values():
        ordered = sorted(results, key=lambda r: r["samples_per_second"])
        median = dict(ordered[len(ordered) // 2])
        median["all"] = [r["samples_per_second"] for r in results]
        rows.append(median)
    notes = [
        "CPU rows: the same 2 cores and the same effective batch, given to one process with 2 intra-op threads "
        f"or to 2 DDP ranks (gloo) with 1 thread each, each run {args.repeats} times interleaved; the row is the "
        "median run (the upper one of an even count; every run's samples/s in the last column); speed-up is "
        "against the first row.",
    ]
    if torch.cuda.is_available():
        n = torch.cuda.device_count()
        rows += [setting("cuda", k, 4, 16, 4 * args.steps, args.model) for k in (1, 2) if k <= n]
        notes.append("CUDA rows: per-device batch 16 (camera-ready), bf16-mixed; speed-up against 1 device.")
    else:
        notes.append("No CUDA device here: the CUDA rows (devices 1 and 2 at per-device batch 16) are not measured.")
    load_after = os.getloadavg()[0]
    if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1):
        notes.append(
            f"The machine was shared while this ran (load average {load_before:.1f} / {load_after:.1f} on "
            f"{os.cpu_count()} cores): the CPU timings are noisy, compare the rows of one run only. On a loaded "
            "machine one process with 2 intra-op threads loses far more than 2 one-thread ranks (probably because its "
            "threads wait for each other whenever another process holds a core), so the speed-up here overstates what "
            "devices: 2 gains on an idle 2-core CPU."
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from slimdiff.io import write_text

    write_text(out, page(rows, notes, command, (load_before, load_after)))
    print(out.read_text())


if __name__ == "__main__":
    main()
