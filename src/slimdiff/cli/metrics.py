"""slimdiff-metrics: score generated samples against the real test slices of a cache.

image-metrics   KID, FID, LPIPS per replica, per z-bin KID/LPIPS, memorisation  -> OUT/image.json, per_zbin.csv
mask-metrics    MMD-MF per replica, per-feature Wasserstein, tau sweep          -> OUT/mask.json, morphology.csv
baseline        real vs real (training vs test slices)                          -> OUT (a JSON file)
memorization    nearest-neighbour ratio of synthetic vs test distances to train -> printed JSON
"""

from __future__ import annotations

import argparse
import json
import sys

from slimdiff.cli._common import run, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="slimdiff-metrics", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("image-metrics", "mask-metrics", "baseline", "memorization"):
        s = sub.add_parser(name)
        s.add_argument("--cache", required=True, help="slice cache directory")
        s.add_argument("--fold", type=int, default=0)
        s.add_argument("--config", help="pipeline config (its metrics section); omitted: the paper protocol")
        s.add_argument("--device", default="auto")
        if name != "baseline":
            s.add_argument("--samples", nargs="+", required=True, help="sample directories or zbin*.npz files")
        if name != "memorization":
            s.add_argument("--out", required=True)
        s.add_argument("--run", default="run", help="name recorded in the output")
        s.add_argument("--feature-cache", help="directory for cached Inception features")
        s.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.config import load_config
        from slimdiff.device import pick_device
        from slimdiff.generation.outputs import find_sample_files
        from slimdiff.metrics import evaluate

        cfg = dict(load_config(args.config)["metrics"], feature_cache=args.feature_cache)
        device = pick_device(args.device)
        if args.command == "image-metrics":
            evaluate.evaluate_images(
                args.cache, find_sample_files(args.samples), args.out, args.fold, cfg, args.run, device
            )
        elif args.command == "mask-metrics":
            evaluate.evaluate_masks(args.cache, find_sample_files(args.samples), args.out, args.fold, cfg, args.run)
        elif args.command == "baseline":
            evaluate.evaluate_baseline(args.cache, args.out, args.fold, cfg, device)
        else:
            import numpy as np

            from slimdiff.metrics.features import InceptionFeatures

            inception = InceptionFeatures(device=device, batch_size=cfg["batch_size"])
            feats = {
                role: inception.cached(evaluate.real_split(args.cache, args.fold, role)["images"], cfg["feature_cache"])
                for role in ("train", "test")
            }
            fake = np.concatenate(
                [r["images"] for r in evaluate.load_replicas(find_sample_files(args.samples)).values()]
            )
            fake_feats = inception.cached(fake, cfg["feature_cache"])
            print(json.dumps(evaluate.memorization(feats["train"], feats["test"], fake_feats), indent=2))

    return run(body, "slimdiff-metrics")


if __name__ == "__main__":
    sys.exit(main())
