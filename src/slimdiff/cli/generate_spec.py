"""slimdiff-generate-spec: generate from a JSON spec (detailed or compact format), with checks and a dry run."""

from __future__ import annotations

import argparse
import logging
import sys

from slimdiff.cli._common import run, setup_logging


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="slimdiff-generate-spec", description=__doc__)
    p.add_argument("--spec", required=True, help="generation spec JSON")
    p.add_argument("--validate-only", action="store_true", help="check the spec and the model, then exit")
    p.add_argument("--dry-run", action="store_true", help="print the plan and a time estimate, generate nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def describe(plan) -> str:
    by_bin: dict[int, list[int]] = {}
    for c in plan.conditions:
        by_bin.setdefault(c.z_bin, [0, 0])[c.cls] += c.n
    lines = [
        f"model      {plan.model_path}",
        f"output     {plan.output_dir}",
        f"seed {plan.seed}, replica {plan.replica}, batch {plan.batch_size}, dtype {plan.dtype}, device {plan.device}",
        "z-bin  control  lesion",
    ]
    lines += [f"{z:5d}  {c:7d}  {lesion:6d}" for z, (c, lesion) in sorted(by_bin.items())]
    lines.append(f"total  {plan.total} samples")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)

    def body() -> None:
        from slimdiff.generation.spec import parse_spec

        plan = parse_spec(args.spec)
        if args.validate_only:
            print(f"{args.spec}: valid ({plan.total} samples over {len({c.z_bin for c in plan.conditions})} z-bins)")
            return
        if args.verbose or args.dry_run:
            print(describe(plan))
        if args.dry_run:
            import math

            from slimdiff.device import pick_device
            from slimdiff.generation.sampling import time_one_batch
            from slimdiff.model.file import load_denoiser

            device = pick_device(plan.device)
            net, diffusion, payload = load_denoiser(plan.model_path, device)
            per_call = time_one_batch(net, diffusion, payload, plan.batch_size, device)
            steps = payload["run_cfg"]["sampler"]["steps"]
            seconds = per_call * steps * math.ceil(plan.total / plan.batch_size)
            ms = per_call * 1000
            print(f"estimated time: {seconds:.0f} s ({steps} DDIM steps, {ms:.0f} ms per batch call on {device})")
            return
        from slimdiff.generation.runner import generate_to_dir

        logging.getLogger(__name__).info("generating %d samples", plan.total)
        generate_to_dir(
            plan.model_path,
            plan.output_dir,
            plan.conditions,
            plan.seed,
            plan.replica,
            plan.batch_size,
            plan.device,
            plan.dtype,
        )

    return run(body, "slimdiff-generate-spec")


if __name__ == "__main__":
    sys.exit(main())
