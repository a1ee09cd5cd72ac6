"""slimdiff-cache: build the slice cache (arrays + index + splits) from raw 3D FLAIR volumes."""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging
from slimdiff.config import load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-cache", description=__doc__)
    p.add_argument("--raw", required=True, help="raw cohort root (BIDS ds004199 or nnU-Net layout)")
    p.add_argument("--out", required=True, help="cache directory")
    p.add_argument("--config", help="pipeline config (config/config.yaml); omitted: the paper defaults")
    p.add_argument("--layout", choices=["bids", "nnunet"], help="overrides data.layout")
    p.add_argument("--threads", type=int, default=1, help="subjects preprocessed in parallel")
    p.add_argument("--qc", action="store_true", help="also write the QC figures to OUT/qc")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.data.cache import build_cache

        config = load_config(args.config)
        if args.layout:
            config["data"]["layout"] = args.layout
        build_cache(args.raw, args.out, config["data"], threads=args.threads)
        if args.qc:
            from slimdiff.data.qc import write_qc

            write_qc(args.out, f"{args.out}/qc", **config["data"]["qc"])

    return run(body, "slimdiff-cache")


if __name__ == "__main__":
    sys.exit(main())
