"""slimdiff-import-upstream: turn an upstream SLIM-Diff checkpoint (slim-diff 1.0.0, e.g. the released
slimdiff_x0_lp1.5.ckpt) into this project's model.pt, which slimdiff-generate and the pipeline use like a
trained run.

The EMA weights are taken when the checkpoint holds them (else the raw ones; --weights chooses), and model.pt
records which. The network config comes from the checkpoint's own hyper_parameters, or from --config (the
upstream training YAML). A setting with no counterpart here is an error that names the upstream key.
"""

from __future__ import annotations

import argparse
import json
import sys

from slimdiff.cli._common import run, setup_logging


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="slimdiff-import-upstream", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--ckpt", required=True, help="upstream Lightning checkpoint (.ckpt)")
    p.add_argument("--config", help="upstream training config YAML (default: the checkpoint's hyper_parameters)")
    p.add_argument("--priors", help="upstream z-bin priors .npz (models trained with the concat anatomical prior)")
    p.add_argument("--weights", choices=("auto", "ema", "raw"), default="auto", help="auto: EMA when present")
    p.add_argument("--out", required=True, help="model.pt to write")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.upstream.convert import import_upstream, read_upstream_yaml

        config = read_upstream_yaml(args.config) if args.config else None
        summary = import_upstream(args.ckpt, args.out, config=config, priors=args.priors, weights=args.weights)
        print(json.dumps(summary, indent=2))

    return run(body, "slimdiff-import-upstream")


if __name__ == "__main__":
    sys.exit(main())
