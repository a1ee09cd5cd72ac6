"""slimdiff-synth: write the embedded synthetic FCD cohort (ds004199 layout)."""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging
from slimdiff.config import load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-synth", description=__doc__)
    p.add_argument(
        "--out",
        required=True,
        help="cohort directory to write: new, empty, or a cohort written before (replaced atomically)",
    )
    p.add_argument("--config", help="pipeline config; its data.synthetic section gives the defaults")
    p.add_argument("--patients", type=int, help="number of FCD patients")
    p.add_argument("--controls", type=int, help="number of healthy controls")
    p.add_argument("--seed", type=int)
    p.add_argument("--voxel-mm", type=float, nargs=2, metavar=("LO", "HI"), help="range of random voxel sizes")
    p.add_argument("--lesion-volume-ml", type=float, nargs=2, metavar=("LO", "HI"), help="range of lesion volumes")
    p.add_argument("--lesion-contrast", type=float, help="lesion hyperintensity (white matter = 0.58)")
    p.add_argument("--variability", type=float, help="scale of pose and shape differences between subjects")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.data.synth import write_cohort

        cfg = load_config(args.config)["data"]["synthetic"]
        for key in cfg:
            if getattr(args, key, None) is not None:
                cfg[key] = getattr(args, key)
        write_cohort(args.out, **cfg, threads=args.threads)

    return run(body, "slimdiff-synth")


if __name__ == "__main__":
    sys.exit(main())
