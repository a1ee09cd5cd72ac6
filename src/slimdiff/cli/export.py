"""slimdiff-export: generated samples -> an nnU-Net raw dataset or NIfTI image/mask pairs (masks binarised)."""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-export", description=__doc__)
    p.add_argument("--samples", nargs="+", required=True, help="zbinNN.npz files or directories holding them")
    p.add_argument("--out", required=True, help="output directory: new or empty, unless --append")
    p.add_argument("--format", default="nnunet", choices=["nnunet", "nifti"])
    p.add_argument("--tau", type=float, default=0.0, help="mask threshold (default 0)")
    p.add_argument("--dataset-name", default="SlimDiffSynthetic")
    p.add_argument("--only-lesion", action="store_true", help="skip pairs whose binarised mask is empty")
    p.add_argument(
        "--append",
        action="store_true",
        help="add the cases to the dataset already in --out (same format, dataset name and tau); "
        "a case id already there is an error",
    )
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.generation.export import export_samples
        from slimdiff.generation.outputs import find_sample_files

        n = export_samples(
            find_sample_files(args.samples),
            args.out,
            args.format,
            args.tau,
            args.dataset_name,
            args.only_lesion,
            args.append,
        )
        print(f"exported {n} pairs to {args.out} ({args.format}{', appended' if args.append else ''})")

    return run(body, "slimdiff-export")


if __name__ == "__main__":
    sys.exit(main())
