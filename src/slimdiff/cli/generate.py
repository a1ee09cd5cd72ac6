"""slimdiff-generate: sample (image, mask) pairs per z-bin and class from a model.pt."""

from __future__ import annotations

import argparse
import sys

from slimdiff.cli._common import run, setup_logging


def int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-generate", description=__doc__)
    p.add_argument("--model", required=True, help="model.pt from slimdiff-train")
    p.add_argument(
        "--out",
        required=True,
        help="output directory: zbinNN.npz/.csv per z-bin and grid.png; one per replica (a z-bin file of "
        "another model, replica, seed or sampler is not written over)",
    )
    p.add_argument("--zbins", type=int_list, help="comma-separated z-bins (default: all)")
    p.add_argument("--classes", type=int_list, default=[0, 1], help="0 = no lesion, 1 = lesion (default 0,1)")
    p.add_argument("--n-per-condition", type=int, default=8, help="samples per (z-bin, class)")
    p.add_argument("--replica", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"], help="storage dtype")
    p.add_argument(
        "--compute-dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16"],
        help="precision the network computes in (auto: bfloat16 on CUDA for float16 storage, else float32)",
    )
    p.add_argument("--steps", type=int, help="DDIM steps (default: the model's sampler config)")
    p.add_argument("--eta", type=float)
    p.add_argument("--spacing", choices=["leading", "trailing"])
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.errors import SlimdiffInputError
        from slimdiff.generation.runner import generate_to_dir
        from slimdiff.generation.sampling import Condition
        from slimdiff.model.file import read_model_file

        n_bins = read_model_file(args.model)["data_info"]["z_bins"]
        zbins = args.zbins if args.zbins is not None else list(range(n_bins))
        bad = [z for z in zbins if not 0 <= z < n_bins]
        if bad or len(set(zbins)) != len(zbins):
            raise SlimdiffInputError(f"--zbins {zbins}: must be distinct z-bins in 0-{n_bins - 1}")
        if any(c not in (0, 1) for c in args.classes) or args.n_per_condition < 0:
            raise SlimdiffInputError("--classes must be 0 and/or 1, and --n-per-condition non-negative")
        conditions = [Condition(z, c, args.n_per_condition) for z in zbins for c in args.classes]
        overrides = {k: getattr(args, k) for k in ("steps", "eta", "spacing") if getattr(args, k) is not None}
        generate_to_dir(
            args.model,
            args.out,
            conditions,
            args.seed,
            args.replica,
            args.batch_size,
            args.device,
            args.dtype,
            overrides,
            compute_dtype=args.compute_dtype,
        )

    return run(body, "slimdiff-generate")


if __name__ == "__main__":
    sys.exit(main())
