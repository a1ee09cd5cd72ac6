"""slimdiff-config: print the config a run would use, resolved as the Snakefile resolves it.

The files are combined as `snakemake --configfile FILE ...` combines them (each with what it `extends`, in
order; none named: config/config.yaml), then validated against config/schema.yaml with its defaults filled in.
"""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-config", description=__doc__)
    p.add_argument("files", nargs="*", default=["config/config.yaml"], help="config files, as given to --configfile")
    p.add_argument("--out", default="-", help="file to write (default: print)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.config import resolve_config, show_config, validate_config

        source = " + ".join(args.files)
        config = validate_config(resolve_config(args.files), source=source)
        show_config(config, args.out, source=source)

    return run(body, "slimdiff-config")


if __name__ == "__main__":
    sys.exit(main())
