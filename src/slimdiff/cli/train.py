"""slimdiff-train: train one run of the experiment grid on one fold of a slice cache (resumes if killed)."""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging
from slimdiff.config import ConfigError, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-train", description=__doc__)
    p.add_argument("--cache", help="slice cache directory (slimdiff-cache output)")
    p.add_argument("--out", help="run directory: last.ckpt, model.pt, log.csv, loss.png")
    p.add_argument("--config", help="pipeline config; omitted: the paper defaults")
    p.add_argument("--run", help="run name from the config's experiment grid (default: the only/first run)")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-epochs", type=int, help="override training.max_epochs")
    p.add_argument("--max-steps", type=int, help="override training.max_steps")
    p.add_argument("--list-runs", action="store_true", help="print the config's runs and their folds, and exit")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.list_runs and not (args.cache and args.out):
        p.error("--cache and --out are required (unless --list-runs)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.experiments import expand_runs
        from slimdiff.training.runner import train_run

        runs = expand_runs(load_config(args.config))
        if args.list_runs:
            print("\n".join(f"{name}  folds {cfg['training']['folds']}" for name, cfg in runs.items()))
            return
        name = args.run or next(iter(runs))
        if name not in runs:
            raise ConfigError(f"run {name!r} is not in the experiment grid; choose from: {', '.join(runs)}")
        cfg = runs[name]
        if args.max_epochs is not None:
            cfg["training"]["max_epochs"] = args.max_epochs
        if args.max_steps is not None:
            cfg["training"]["max_steps"] = args.max_steps
        train_run(args.cache, args.out, cfg, fold=args.fold, device=args.device, run_name=name)

    return run(body, "slimdiff-train")


if __name__ == "__main__":
    sys.exit(main())
