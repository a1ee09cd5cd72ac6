"""Rule generate: the samples of one z-bin (or of every z-bin) for one run, fold and replica."""

from pathlib import Path

from slimdiff.rule_log import to_rule_log

to_rule_log(snakemake)  # first, so every library logger writes to the rule log

import torch

from slimdiff.generation.runner import generate_to_dir
from slimdiff.generation.sampling import Condition

torch.set_num_threads(snakemake.threads)
# params hold what the samples depend on (the run's protocol's generation settings); the runtime values (batch
# size, channels_last) are the config's.
gen = {**snakemake.config["generation"], **snakemake.params.generation}
sampler = snakemake.params.sampler
samples = [str(p) for p in snakemake.output if str(p).endswith(".npz")]  # one or every z-bin
zbins = [int(Path(p).stem.removeprefix("zbin")) for p in samples]  # generation.job_unit decides how many
written = generate_to_dir(
    snakemake.input.model,
    Path(samples[0]).parent,
    [Condition(z, c, gen["n_per_condition"]) for z in zbins for c in gen["classes"]],
    seed=gen["seed"],
    replica=int(snakemake.wildcards.replica),
    batch_size=gen["batch_size"],
    dtype=gen["dtype"],
    sampler_overrides={k: sampler[k] for k in ("steps", "eta", "spacing", "guidance_scale")},
    grid=False,
    channels_last=gen["channels_last"],
    compute_dtype=gen["compute_dtype"],
)
assert [str(p) for p in written] == samples, written
