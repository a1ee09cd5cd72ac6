"""Which training levers buy image realism within the embedded default's budget? Train one run of the grid
under config overrides, sample one replica, and score it the way the pipeline does (KID against the real
test slices of fold 0, lesion rate and area). Behind the numbers in docs/results/levers.md.

    python benchmarks/realism_levers.py --variants training.lr=1e-3 training.lr=2e-3 \
        "training.lr=2e-3;training.seed=34" --jobs 2 --out results/benchmarks/realism_levers.json

A variant is `;`-separated `dotted.key=value` pairs (values read as YAML) applied to the base config. Needs the
slice cache of a `make run` (results/cache) and the metric weights (TORCH_HOME, as the Makefile sets it). Each
training takes one core for about 4 minutes at the default's 8 epochs; `--jobs` trainings run side by side.
Trainings of the same variant differ by the training seed about as much as most levers move KID (0.124 and
0.154 at lr 2e-3, seeds 33 and 34), so compare levers over a few seeds. Each variant trains in its own
directory under --work, which a rerun reuses: delete it after changing the base config.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml

from slimdiff import provenance
from slimdiff.config import validate_config
from slimdiff.generation.sampling import Condition, generate_samples
from slimdiff.io import write_json
from slimdiff.metrics.evaluate import real_split
from slimdiff.metrics.features import InceptionFeatures
from slimdiff.metrics.kid_fid import fid, kid
from slimdiff.metrics.lesion_stats import lesion_stats
from slimdiff.model.file import load_denoiser


def parse_variant(text: str) -> dict:
    """'a.b=1;c.d=[1, 2]' -> {'a.b': 1, 'c.d': [1, 2]}; '' is the base config."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"variant {text!r}: {item!r} is not dotted.key=value")
        out[key.strip()] = _value(value)
    return out


def _value(text: str):
    """YAML, except that 2e-3 is a number (PyYAML reads floats without a dot as strings)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_overrides(config: dict, overrides: dict) -> dict:
    cfg = copy.deepcopy(config)
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = cfg
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise SystemExit(f"override {dotted}: {key!r} is not a section of the config")
            node = node[key]
        node[leaf] = value
    return cfg


def variant_name(overrides: dict) -> str:
    """A directory name: the same overrides reuse the same training (a finished one is not redone)."""
    name = "_".join(f"{k.split('.')[-1]}{v}" for k, v in overrides.items()) or "base"
    return re.sub(r"[^A-Za-z0-9._-]+", "", name) or "base"


def start_training(work: Path, cfg: dict, args) -> subprocess.Popen:
    work.mkdir(parents=True, exist_ok=True)
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "slimdiff.cli.train", "--cache", str(args.cache), "--out", str(work / "train")]
    cmd += ["--config", str(work / "config.yaml"), "--run", args.run]
    env = dict(os.environ, OMP_NUM_THREADS=str(cfg["training"]["threads"]))
    return subprocess.Popen(cmd, stdout=open(work / "train.log", "w"), stderr=subprocess.STDOUT, env=env)


def score(model: Path, cfg: dict, real: dict, real_feats: np.ndarray, inception: InceptionFeatures) -> dict:
    net, diffusion, payload = load_denoiser(model)
    n_bins, gen = payload["data_info"]["z_bins"], cfg["generation"]
    conditions = [Condition(z, c, gen["n_per_condition"]) for z in range(n_bins) for c in gen["classes"]]
    out = generate_samples(net, diffusion, payload, conditions, gen["seed"], 0, gen["batch_size"], progress=False)
    feats = inception(out["images"])
    m = cfg["metrics"]
    return {
        **kid(real_feats, feats, m["kid_subsets"], m["kid_subset_size"], m["seed"]),
        "fid": fid(real_feats, feats),
        "lesions": lesion_stats(out["images"], out["masks"], out["class"], m["tau"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("config/config.yaml"))
    ap.add_argument("--cache", type=Path, default=Path("results/cache"))
    ap.add_argument("--run", default="x0_lp1.5_sc0.5")
    ap.add_argument("--variants", nargs="+", default=[""])
    ap.add_argument("--jobs", type=int, default=2, help="trainings side by side")
    ap.add_argument("--work", type=Path, default=Path("results/benchmarks/realism_levers"))
    ap.add_argument("--out", type=Path, default=Path("results/benchmarks/realism_levers.json"))
    args = ap.parse_args()
    base = yaml.safe_load(args.config.read_text())
    variants = [(v, parse_variant(v)) for v in args.variants]
    torch.set_num_threads(args.jobs)
    inception = InceptionFeatures()
    real = real_split(args.cache, 0, "test")
    real_feats = inception(real["images"])
    rows = []
    for start in range(0, len(variants), args.jobs):
        batch = variants[start : start + args.jobs]
        procs = []
        for text, overrides in batch:
            cfg = validate_config(apply_overrides(base, overrides), f"variant {text!r}")
            work = args.work / variant_name(overrides)
            procs.append((text, overrides, cfg, work, start_training(work, cfg, args)))
        for text, overrides, cfg, work, proc in procs:
            if proc.wait() != 0:
                raise SystemExit(f"variant {text!r}: training failed, see {work / 'train.log'}")
            result = score(work / "train" / "model.pt", cfg, real, real_feats, inception)
            epochs = np.genfromtxt(work / "train" / "log.csv", delimiter=",", names=True)
            rows.append(
                {"variant": text, "overrides": overrides, "train_s": float(np.sum(epochs["seconds"])), **result}
            )
            les = result["lesions"]
            print(
                f"{text or 'base'}: KID {result['kid_mean']:.4f} FID {result['fid']:.1f} lesion rate "
                f"{les['lesion_rate_cls1']:.2f} / {les['lesion_rate_cls0']:.2f} median area {les['area_median']}",
                flush=True,
            )
    write_json(
        args.out,
        {"config": str(args.config), "run": args.run, "replica": 0, "rows": rows, "versions": provenance.versions()},
    )


if __name__ == "__main__":
    main()
