"""Rule train: one run of the experiment grid on one fold (resumes from last.ckpt after a kill)."""

import logging
from pathlib import Path

from slimdiff.gpu_lease import lease_gpu
from slimdiff.rule_log import to_rule_log

# First, so every library logger writes to the rule log. The lease is ours, not to_rule_log's: a DDP training
# (training.devices = N, the rule's gpu=N) takes its N devices at once (slimdiff.gpu_lease).
to_rule_log(snakemake, lease=False)
# training.devices, not resources.gpu: Snakemake caps the resource at the global `--resources gpu=M`, but the job
# needs its N devices all the same (and the lease keeps them from any other job).
if snakemake.resources.get("gpu", 0):
    if snakemake.resources.gpu < snakemake.params.devices:
        logging.getLogger("slimdiff").warning(
            "Snakemake counts this job as gpu=%d (its --resources gpu limit) but it trains on %d devices: "
            "on a GPU machine pass --resources gpu=N with N at least that",
            snakemake.resources.gpu,
            snakemake.params.devices,
        )
    lease_gpu(snakemake.params.devices)  # held until the job's process exits, kill included

from slimdiff.experiments import expand_runs
from slimdiff.training.runner import train_run

run = snakemake.wildcards.run
# params.run_cfg is what the model depends on; the full run config adds the runtime settings (threads,
# channels_last, ...) and the sampler, which model.pt records as the defaults for sampling by hand.
run_cfg = expand_runs(snakemake.config)[run]
# The threads Snakemake granted: training.threads, capped at --cores (or SLURM's cpus_per_task). Never more
# threads than cores: oversubscribed (8 threads on 2 cores), a bf16 training job took 244 s instead of 42.
run_cfg["training"]["threads"] = snakemake.threads
if run_cfg["training"]["devices"] != snakemake.params.devices:
    raise RuntimeError(f"training.devices {run_cfg['training']['devices']} != the rule's {snakemake.params.devices}")

train_run(
    Path(snakemake.input.cache_meta).parent,
    Path(snakemake.output.model).parent,
    run_cfg,
    fold=int(snakemake.wildcards.fold),
    run_name=run,
    restart_on_config_change=True,  # Snakemake reruns a trained job only when its inputs or params changed
)
