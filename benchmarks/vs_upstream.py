"""This project against upstream SLIM-Diff (PyPI slim-diff 1.0.0) on the same machine (run on demand, not a test).

    make upstream-env && make vs-upstream
    # or, from the repository root, in the upstream environment:
    .upstream-venv/bin/python benchmarks/vs_upstream.py [--device cpu|cuda|all] [--threads 1,2] [--quick]
        [--models small,paper] [--repeats N] [--batch B] [--ours-channels-last config|on|off] [--out FILE.json]

Default: CPU (all cores) plus CUDA when present, both models, results/benchmarks/vs_upstream.json. On a 2-core
CPU `--threads 1,2` takes about 15 minutes, one thread count about 8; --quick (a smoke run) about 4.

Measures, per model, device and thread count, each side on the same config, batch and step counts:
* training samples/s: upstream's JSDDPMLightningModule.training_step (self-conditioning, Lp loss) with its
  EMACallback (EMA stored on the CPU, upstream's default) in a pytorch_lightning Trainer, against our
  DiffusionModule.training_step with EMAWeightAveraging and fused AdamW as benchmarks/train_throughput.py runs it
  (channels_last as the run config sets it). Same precision (CPU: 32-true both; CUDA: upstream 16-mixed, ours
  bf16-mixed), gradient clipping 1.0, AdamW. The first steps are warm-up and not timed. The self-conditioning
  coin (p = 0.5 on both sides) is replaced by alternation, on on even batches and off on odd ones (the coin
  set to p = 1 or 0 before each batch), so both sides do exactly the expected number of no-grad passes;
  `sc_passes` in the output counts them.
* sampling samples/s: upstream's DiffusionSampler.sample (DDIM, eta 0.2, self-conditioning, given x_T and
  tokens) against what slimdiff-generate runs, slimdiff.generation.sampling.generate_samples (seeded
  per-sample noise, DDIM eta 0.2, leading spacing; bf16 autocast on CUDA, as for float16 storage), one batch,
  the same DDIM step count. One untimed 1-step call first.
* peak memory: each measurement runs in its own fresh subprocess (`--one`); on the CPU its peak RSS
  (ru_maxrss) and the increase over the RSS after imports; on CUDA torch.cuda.max_memory_allocated.

Each measurement is repeated (STEPS, --repeats; the sides interleaved) and the median run is reported, with every
run's samples/s and the 1-minute load average around it: on a shared CPU other jobs skew single runs.

Models: the embedded default's small model (config/config.yaml) at 64x64 and the paper model (config/paper.yaml:
channels 64-128-256-256, attention at the two deepest levels, 2 res blocks, 30 z-bins) at 160x160, each the x0 /
Lp 1.5 / self-conditioning 0.5 run; batch 16, except the paper model on the CPU (batch 4: see STEPS).

Targets: CPU >= 1.1x upstream's training samples/s and >= 1.5x its sampling samples/s; GPU 2x and 3x.

Upstream's import package is literally `src`, a namespace package (its wheel has no src/__init__.py), so from the
repository root `src.__path__` also lists this checkout's src/; `src.diffusion` (a regular package) exists only in
upstream's installation, and the children check that it comes from site-packages. wandb is
disabled. Writes one JSON (atomically) with samples/s per side, ratios ours/upstream, peak memory, the
config, threads, device and versions, and prints a table.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

os.environ["WANDB_MODE"] = "disabled"  # before anything imports upstream (and with it wandb): no network
os.environ.setdefault("WANDB_SILENT", "true")

REPO = Path(__file__).resolve().parents[1]
MARK = "VS-UPSTREAM-RESULT "
Z_RANGE = [34, 115]  # as benchmarks/train_throughput.py
MAX_Z = 127

# Per (model, device): batch, training warm-up and timed steps, DDIM steps of the timed sampling run. With the
# self-conditioning alternation starting at batch 0, an even number of timed steps gets exactly half of them with
# the extra no-grad pass. The paper model on the CPU runs at batch 4: a training step at batch 16 takes about two
# minutes on one core, and upstream's training at batch 4 already peaks 5.6 GB above its post-import RSS (MONAI's
# einsum attention keeps the 1600x1600 attention matrices of the 40x40 level for the backward pass; ours 3.6 GB),
# so batch 16 would need over 20 GB.
# Repeats: each measurement runs that many times (fresh processes, the sides interleaved) and the median counts; one
# run of the small model on a shared 2-core machine varies by 10-20 % from process to process (in one process,
# repeated sampling runs agree within 1 %).
STEPS = {
    ("small", "cpu"): {"batch": 16, "warmup": 2, "train": 12, "ddim": 25, "repeats": 5},
    ("paper", "cpu"): {"batch": 4, "warmup": 1, "train": 2, "ddim": 4, "repeats": 1},
    ("small", "cuda"): {"batch": 16, "warmup": 4, "train": 40, "ddim": 100, "repeats": 3},
    ("paper", "cuda"): {"batch": 16, "warmup": 4, "train": 20, "ddim": 50, "repeats": 3},
}
QUICK = {"warmup": 1, "train": 2, "ddim": 2, "repeats": 1}  # --quick: a smoke run of every path, batch as above


def _load_by_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _throughput():
    return _load_by_path("train_throughput", REPO / "benchmarks" / "train_throughput.py")


# --------------------------------------------------------------------------------------------------------------
# Configs


def our_configs(which: str) -> tuple[dict, int, int, bool]:
    """(run config, image size, z-bins, generation.channels_last) as train_throughput's run_config builds it."""
    from slimdiff.config import load_config

    run, size = _throughput().run_config(which)
    full = load_config(REPO / "config" / ("paper.yaml" if which == "paper" else "config.yaml"))
    return run, size, full["data"]["cache"]["z_bins"], bool(full["generation"]["channels_last"])


def upstream_config(run: dict, size: int, n_bins: int, batch: int, ddim_steps: int) -> dict:
    """Upstream's config dict (the key set of tests/upstream/make_fixtures.py) for our run config."""
    fixtures = _load_by_path("vs_upstream_fixtures", REPO / "tests" / "upstream" / "make_fixtures.py")
    cfg = copy.deepcopy(fixtures.BASE)
    m, tr = run["model"], run["training"]
    cfg["data"]["slice_sampling"]["z_range"] = list(Z_RANGE)
    cfg["data"]["transforms"]["roi_size"] = [size, size, size]
    cfg["conditioning"].update({"z_bins": n_bins, "max_z": MAX_Z})
    cfg["conditioning"]["cfg"].update({"enabled": False, "null_token": 2 * n_bins})
    cfg["model"].update(
        {
            "channels": list(m["channels"]),
            "attention_levels": list(m["attention_levels"]),
            "num_res_blocks": m["num_res_blocks"],
            "num_head_channels": m["num_head_channels"],
            "norm_num_groups": m["norm_num_groups"],
        }
    )
    cfg["scheduler"]["prediction_type"] = {"x0": "sample", "epsilon": "epsilon", "v": "v_prediction"}[
        run["diffusion"]["prediction"]
    ]
    cfg["sampler"].update({"type": "DDIM", "num_inference_steps": ddim_steps, "eta": run["sampler"]["eta"]})
    sc = run["self_conditioning"]
    cfg["training"]["self_conditioning"] = {"enabled": sc["enabled"], "probability": sc["probability"]}
    cfg["training"]["optimizer"].update({"lr": tr["lr"], "weight_decay": tr["weight_decay"]})
    cfg["training"]["lr_scheduler"]["eta_min"] = tr["lr_min"]
    cfg["training"].update({"max_epochs": tr["max_epochs"], "batch_size": batch})
    cfg["training"]["ema"].update({"decay": tr["ema_decay"], "export_to_checkpoint": False})
    loss = run["loss"]
    cfg["loss"]["lp_norm"]["p"] = loss["p"]
    for channel in ("image", "mask"):  # the small config weights lesion pixels of the mask channel by 1.5
        weight = loss[f"lesion_weight_{channel}"]
        cfg["loss"][f"lesion_weighted_{channel}"] = {
            "enabled": weight != 1.0,
            "lesion_weight": weight,
            "background_weight": 1.0,
        }
    return cfg


# --------------------------------------------------------------------------------------------------------------
# Self-conditioning alternation and pass counting (a mixin before each side's step timer)


class ScAlternation:
    """Before each batch: self-conditioning coin p = 1 on even batches, 0 on odd ones; counts no-grad passes."""

    counts = {"sc_passes": 0, "forwards": 0}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        p = 1.0 if batch_idx % 2 == 0 else 0.0
        if hasattr(pl_module, "_self_cond_prob"):  # upstream
            pl_module._self_cond_prob = p
        else:
            pl_module.run_cfg["self_conditioning"]["probability"] = p
        if batch_idx == self.warmup:
            net = pl_module.net if hasattr(pl_module, "net") else pl_module.model

            def count(module, args, output):
                ScAlternation.counts["forwards"] += 1
                ScAlternation.counts["sc_passes"] += int(not torch.is_grad_enabled())

            net.register_forward_hook(count)
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)


# --------------------------------------------------------------------------------------------------------------
# One measurement, in its own process


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _memory(device: str, baseline_mib: float) -> dict:
    if device == "cuda":
        return {"peak_memory_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1), "memory_kind": "cuda"}
    peak = _peak_rss_mib()
    return {
        "peak_memory_mib": round(peak, 1),
        "memory_delta_mib": round(peak - baseline_mib, 1),
        "memory_kind": "process max RSS (delta: over the RSS after imports)",
    }


def _check_upstream_import() -> str:
    """Where upstream's `src.diffusion` comes from; it must be the installed package, never this checkout."""
    import src.diffusion

    where = str(Path(src.diffusion.__file__).resolve())
    if "site-packages" not in where:
        raise SystemExit(f"`import src.diffusion` resolved to {where}, not upstream's installed package")
    return where


def upstream_train(spec: dict) -> dict:
    import pytorch_lightning as upl
    from omegaconf import OmegaConf

    where = _check_upstream_import()
    from src.diffusion.training.callbacks.epoch_callbacks import EMACallback
    from src.diffusion.training.lit_modules import JSDDPMLightningModule

    tt = _throughput()
    run, size, n_bins, _ = our_configs(spec["model"])
    warmup, steps, batch, device = spec["warmup"], spec["steps"], spec["batch"], spec["device"]
    base = _peak_rss_mib()
    cfg = upstream_config(run, size, n_bins, batch, spec["ddim_steps"])
    upl.seed_everything(0, verbose=False)
    module = JSDDPMLightningModule(OmegaConf.create(cfg))
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(warmup + steps):
        z = torch.randint(0, n_bins, (batch,), generator=gen)
        cls = torch.randint(0, 2, (batch,), generator=gen)
        batches.append(
            {
                "image": torch.rand(batch, 1, size, size, generator=gen) * 2 - 1,
                "mask": torch.where(torch.rand(batch, 1, size, size, generator=gen) > 0.9, 1.0, -1.0),
                "token": z + n_bins * cls,
                "metadata": {"z_bin": z.tolist()},
            }
        )
    # train_throughput's StepTimer, on pytorch_lightning's Callback (upstream's Trainer package).
    hooks = ("__init__", "on_train_batch_start", "on_train_batch_end")
    timer_base = type("UpstreamStepTimer", (upl.Callback,), {h: getattr(tt.StepTimer, h) for h in hooks})
    timer = type("Timer", (ScAlternation, timer_base), {})(warmup, warmup + steps - 1, device == "cuda")
    precision = "16-mixed" if device == "cuda" else "32-true"
    ema = cfg["training"]["ema"]
    with tempfile.TemporaryDirectory() as root:
        trainer = upl.Trainer(
            accelerator="gpu" if device == "cuda" else "cpu",
            devices=1,
            precision=precision,
            max_epochs=1,
            max_steps=warmup + steps,
            gradient_clip_val=1.0,
            callbacks=[EMACallback(decay=ema["decay"], store_on_cpu=True), timer],
            logger=False,
            enable_checkpointing=False,
            default_root_dir=root,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        loader = torch.utils.data.DataLoader(batches, batch_size=1, collate_fn=lambda items: items[0])
        trainer.fit(module, loader)
    seconds = (timer.end - timer.start) / steps
    return {
        "seconds_per_step": seconds,
        "samples_per_second": batch / seconds,
        "precision": precision,
        "ema": "upstream EMACallback, store_on_cpu=True",
        "upstream_package": where,
        "parameters": sum(p.numel() for p in module.model.parameters()),
        **ScAlternation.counts,
        **_memory(device, base),
    }


def ours_train(spec: dict) -> dict:
    tt = _throughput()
    run, size, n_bins, _ = our_configs(spec["model"])
    warmup, steps, batch, device = spec["warmup"], spec["steps"], spec["batch"], spec["device"]
    base = _peak_rss_mib()
    timers = []

    class Timer(ScAlternation, tt.StepTimer):
        """time_training_steps builds its StepTimer by name, with 1 warm-up step: this one times the last `steps`."""

        def __init__(self, _warmup, _last, cuda):
            super().__init__(warmup, warmup + steps - 1, cuda)
            timers.append(self)

    tt.StepTimer = Timer
    torch.manual_seed(0)
    channels_last = run["training"]["channels_last"] if spec.get("channels_last") is None else spec["channels_last"]
    # steps = warmup - 1 + timed: time_training_steps then runs 1 + that = warmup + timed batches.
    r = tt.time_training_steps(run, size, device, warmup - 1 + steps, batch, channels_last, False, n_bins)
    (timer,) = timers
    seconds = (timer.end - timer.start) / steps
    return {
        "seconds_per_step": seconds,
        "samples_per_second": batch / seconds,
        "precision": r["precision"],
        "channels_last": channels_last,
        "ema": "Lightning EMAWeightAveraging (on the training device)",
        "parameters": r["parameters"],
        **ScAlternation.counts,
        **_memory(device, base),
    }


def upstream_sample(spec: dict) -> dict:
    from omegaconf import OmegaConf

    where = _check_upstream_import()
    from src.diffusion.model.factory import DiffusionSampler
    from src.diffusion.training.lit_modules import JSDDPMLightningModule

    run, size, n_bins, _ = our_configs(spec["model"])
    batch, device, n = spec["batch"], spec["device"], spec["ddim_steps"]
    base = _peak_rss_mib()
    cfg = OmegaConf.create(upstream_config(run, size, n_bins, batch, n))
    torch.manual_seed(0)
    module = JSDDPMLightningModule(cfg).to(device).eval()
    sampler = DiffusionSampler(module.model, module.inferer, cfg, device=device)
    gen = torch.Generator().manual_seed(0)
    x_T = torch.randn(batch, 2, size, size, generator=gen)
    z = torch.arange(batch) // 2 % n_bins
    tokens = (z + n_bins * (torch.arange(batch) % 2)).to(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sampler.num_inference_steps = 1
    sampler.sample(tokens, x_T=x_T, shape=tuple(x_T.shape))  # warm-up
    sampler.num_inference_steps = n
    _sync(device)
    start = time.perf_counter()
    out = sampler.sample(tokens, x_T=x_T, shape=tuple(x_T.shape)).cpu()
    _sync(device)
    seconds = time.perf_counter() - start
    assert out.shape == (batch, 2, size, size)
    return {
        "seconds": seconds,
        "samples_per_second": batch / seconds,
        "compute_dtype": "float32",
        "upstream_package": where,
        **_memory(device, base),
    }


def ours_sample(spec: dict) -> dict:
    from slimdiff.diffusion.schedule import Diffusion
    from slimdiff.generation.sampling import Condition, compute_dtype_for, generate_samples
    from slimdiff.model.factory import build_denoiser, use_channels_last

    run, size, n_bins, channels_last = our_configs(spec["model"])
    channels_last = channels_last if spec.get("channels_last") is None else spec["channels_last"]
    batch, device, n = spec["batch"], spec["device"], spec["ddim_steps"]
    base = _peak_rss_mib()
    info = {"z_bins": n_bins, "z_range": list(Z_RANGE), "image_size": [size, size]}
    torch.manual_seed(0)
    # What load_denoiser rebuilds from a model.pt (build_denoiser + Diffusion), then generate_to_dir's channels_last.
    net = build_denoiser(run["model"], run["self_conditioning"]["enabled"], n_bins, Z_RANGE, (size, size))
    net = net.to(device).eval()
    if channels_last:
        net = use_channels_last(net)
    d = run["diffusion"]
    diffusion = Diffusion(d["timesteps"], d["prediction"], d["clip"]).to(device)
    payload = {"run_cfg": run, "data_info": info}
    conditions = [Condition(i // 2 % n_bins, i % 2, 1) for i in range(batch)]
    dtype = compute_dtype_for("float16", device)  # generation.dtype's default storage
    kw = {"batch_size": batch, "device": device, "eta": run["sampler"]["eta"], "compute_dtype": dtype}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    generate_samples(net, diffusion, payload, conditions, 42, steps=1, progress=False, **kw)  # warm-up
    _sync(device)
    start = time.perf_counter()
    out = generate_samples(net, diffusion, payload, conditions, 42, steps=n, progress=False, **kw)
    _sync(device)
    seconds = time.perf_counter() - start
    assert out["images"].shape == (batch, size, size)
    return {
        "seconds": seconds,
        "samples_per_second": batch / seconds,
        "compute_dtype": dtype,
        "channels_last": channels_last,
        **_memory(device, base),
    }


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def one(spec: dict) -> dict:
    torch.set_num_threads(spec["threads"])
    fn = {
        ("upstream", "train"): upstream_train,
        ("ours", "train"): ours_train,
        ("upstream", "sample"): upstream_sample,
        ("ours", "sample"): ours_sample,
    }[spec["side"], spec["kind"]]
    r = fn(spec)
    return {**r, "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------------------------------------------
# Driver


def measure(spec: dict) -> dict:
    """Run one measurement in a fresh interpreter (its own peak RSS); returns its result dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(spec)]
    env = dict(os.environ, WANDB_MODE="disabled")
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-8000:])
        raise SystemExit(f"measurement {spec} failed (exit {proc.returncode})")
    r = json.loads(lines[-1][len(MARK) :])
    r["process_wall_seconds"] = round(time.perf_counter() - t0, 1)
    # Other load on the machine skews a CPU measurement: the 1-minute load average before and after, to judge.
    r["load_average_1min"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return r


def plan(model: str, device: str, quick: bool, batch: int | None, repeats: int | None) -> dict:
    steps = dict(STEPS[model, device], **(QUICK if quick else {}))
    return {
        "batch": batch or steps["batch"],
        "warmup": steps["warmup"],
        "steps": steps["train"],
        "ddim_steps": steps["ddim"],
        "repeats": repeats or steps["repeats"],
    }


def setting(model: str, device: str, threads: int, steps: dict, channels_last: bool | None) -> dict:
    """Each (kind, side) `repeats` times, in fresh processes, the sides interleaved; the median run counts."""
    spec = {"model": model, "device": device, "threads": threads, "channels_last": channels_last, **steps}
    out = {"model": model, "device": device, "threads": threads, "batch": steps["batch"]}
    for kind in ("train", "sample"):
        runs = {"upstream": [], "ours": []}
        for _ in range(steps["repeats"]):
            for side in ("upstream", "ours"):
                r = measure({**spec, "kind": kind, "side": side})
                print(
                    f"  {model:5s} {device:4s} threads={threads} {kind:6s} {side:8s} "
                    f"{r['samples_per_second']:8.3f} samples/s  (load {r['load_average_1min']})",
                    flush=True,
                )
                runs[side].append(r)
        for side, rs in runs.items():
            rs = sorted(rs, key=lambda r: r["samples_per_second"])
            out[f"{kind}_{side}"] = {
                **rs[(len(rs) - 1) // 2],  # the median run (the lower one of an even count)
                "samples_per_second_of_each_run": [round(r["samples_per_second"], 4) for r in runs[side]],
            }
        ratio = out[f"{kind}_ours"]["samples_per_second"] / out[f"{kind}_upstream"]["samples_per_second"]
        out[f"{kind}_ratio_ours_over_upstream"] = round(ratio, 3)
        # Each pair ran back to back: their ratio is less exposed to the machine's slower and faster minutes.
        pairs = [o["samples_per_second"] / u["samples_per_second"] for u, o in zip(*runs.values(), strict=True)]
        out[f"{kind}_ratio_of_each_pair"] = [round(r, 3) for r in pairs]
    return out


def describe(model: str, steps: dict, channels_last: bool | None) -> dict:
    run, size, n_bins, gen_cl = our_configs(model)
    m = run["model"]
    return {
        "image_size": size,
        "batch": steps["batch"],
        "z_bins": n_bins,
        "channels": m["channels"],
        "attention_levels": m["attention_levels"],
        "num_res_blocks": m["num_res_blocks"],
        "num_head_channels": m["num_head_channels"],
        "norm_num_groups": m["norm_num_groups"],
        "prediction": run["diffusion"]["prediction"],
        "lp": run["loss"]["p"],
        "self_conditioning_probability": run["self_conditioning"]["probability"],
        "ema_decay": run["training"]["ema_decay"],
        "lr": run["training"]["lr"],
        "grad_clip": run["training"]["grad_clip"],
        "ddim_eta": run["sampler"]["eta"],
        "ours_training_channels_last": run["training"]["channels_last"] if channels_last is None else channels_last,
        "ours_generation_channels_last": gen_cl if channels_last is None else channels_last,
        "warmup_training_steps": steps["warmup"],
        "timed_training_steps": steps["steps"],
        "ddim_steps": steps["ddim_steps"],
        "repeats": steps["repeats"],
    }


def versions() -> dict:
    from importlib import metadata

    from slimdiff import provenance

    out = provenance.versions()
    for name in ("slim-diff", "monai", "pytorch-lightning", "lightning", "torch"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def table(results: list[dict]) -> str:
    head = (
        f"{'model':6s} {'device':6s} {'thr':>3s} | {'train up':>9s} {'ours':>9s} {'ratio':>6s} | "
        f"{'sample up':>9s} {'ours':>9s} {'ratio':>6s} | {'peak MiB train up/ours':>22s} | {'sample up/ours':>14s}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        tu, to, su, so = (r[k] for k in ("train_upstream", "train_ours", "sample_upstream", "sample_ours"))
        mem = "memory_delta_mib" if r["device"] == "cpu" else "peak_memory_mib"
        rows.append(
            f"{r['model']:6s} {r['device']:6s} {r['threads']:3d} | {tu['samples_per_second']:9.3f} "
            f"{to['samples_per_second']:9.3f} {r['train_ratio_ours_over_upstream']:5.2f}x | "
            f"{su['samples_per_second']:9.3f} {so['samples_per_second']:9.3f} "
            f"{r['sample_ratio_ours_over_upstream']:5.2f}x | "
            f"{tu[mem]:>10.0f} /{to[mem]:>10.0f} | {su[mem]:>6.0f} /{so[mem]:>6.0f}"
        )
    rows.append("samples/s; ratio = ours / upstream; memory: CPU peak RSS over the post-import RSS, CUDA max allocated")
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    p.add_argument("--threads", default=None, help="comma-separated CPU thread counts (default: all cores)")
    p.add_argument("--models", default="small,paper")
    p.add_argument("--batch", type=int, default=None, help="batch of every setting (default: see STEPS)")
    p.add_argument(
        "--ours-channels-last",
        choices=["config", "on", "off"],
        default="config",
        help="our side's channels_last (default: as the run config sets it for training and generation)",
    )
    p.add_argument("--repeats", type=int, default=None, help="runs per measurement, median counts (default: STEPS)")
    p.add_argument("--quick", action="store_true", help="fewest steps: a smoke run, not a measurement")
    p.add_argument("--out", default=str(REPO / "results" / "benchmarks" / "vs_upstream.json"))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(MARK + json.dumps(one(json.loads(args.one))), flush=True)
        return

    from slimdiff import io, provenance

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    if args.device == "cuda" and not devices:
        raise SystemExit("--device cuda: no CUDA device")
    threads = [int(t) for t in args.threads.split(",")] if args.threads else [os.cpu_count() or 1]
    channels_last = {"config": None, "on": True, "off": False}[args.ours_channels_last]
    vers = versions()
    results = []
    t0 = time.perf_counter()
    for device in devices:
        # CUDA: the thread count matters little; one setting, with the first count.
        for n_threads in threads if device == "cpu" else threads[:1]:
            for model in args.models.split(","):
                steps = plan(model, device, args.quick, args.batch, args.repeats)
                r = setting(model, device, n_threads, steps, channels_last)
                r["config"] = describe(model, steps, channels_last)
                r["device_name"] = torch.cuda.get_device_name(0) if device == "cuda" else f"CPU, {os.cpu_count()} cores"
                results.append(r)
                payload = {
                    "what": "samples/s of upstream slim-diff 1.0.0 and of this project: same machine, config, batch",
                    "targets_ours_over_upstream": {
                        "cpu": {"train": 1.1, "sample": 1.5},
                        "cuda": {"train": 2.0, "sample": 3.0},
                    },
                    "quick": args.quick,
                    "results": results,
                    "versions": vers,
                    "created": provenance.timestamp(),
                    "seconds": round(time.perf_counter() - t0, 1),
                }
                io.write_json(args.out, payload)  # rewritten after each setting: a run cut short keeps them
    print(table(results))
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
