"""slimdiff-utility: does synthetic data help a lesion segmenter? A small MONAI U-Net per arm and seed, trained on
a fold's slices and tested on the fold's real test slices (Dice, lesions found, false alarms on control slices).

real   arm `real`: the fold's real training slices only                                       -> OUT (a JSON file)
run    arms `real+syn` (real plus utility.syn_ratio synthetic pairs per real slice) and `syn`
       (the run's synthetic pairs only, all replicas), for one run's samples                  -> OUT (a JSON file)

Settings: the config's `utility` section over slimdiff.utility.segmenter.UTILITY_DEFAULTS; masks are binarised at
metrics.tau, as for MMD-MF.
"""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="slimdiff-utility", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("real", "run"):
        s = sub.add_parser(name)
        s.add_argument("--cache", required=True, help="slice cache directory")
        s.add_argument("--fold", type=int, default=0)
        s.add_argument("--config", help="pipeline config (its utility and metrics sections); omitted: the defaults")
        s.add_argument("--device", default="auto")
        s.add_argument("--out", required=True, help="result JSON file")
        if name == "run":
            s.add_argument("--samples", nargs="+", required=True, help="sample directories or zbin*.npz files")
            s.add_argument("--run", required=True, help="name of the run the samples come from")
        else:
            s.add_argument("--run", default="real", help="name recorded in the output")
        s.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        import torch

        from slimdiff.config import load_config
        from slimdiff.device import pick_device
        from slimdiff.generation.outputs import find_sample_files
        from slimdiff.io import write_json
        from slimdiff.utility.segmenter import utility_settings
        from slimdiff.utility.stage import utility_report

        cfg = load_config(args.config)
        torch.set_num_threads(utility_settings(cfg)["threads"])  # before pick_device, which logs the thread count
        device = pick_device(args.device)
        files = find_sample_files(args.samples) if args.command == "run" else None
        write_json(args.out, utility_report(args.cache, args.fold, cfg, args.run, files, device))

    return run(body, "slimdiff-utility")


if __name__ == "__main__":
    sys.exit(main())
