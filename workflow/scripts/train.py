"""Rule train: one run of the experiment grid on one fold (resumes from last.ckpt after a kill)."""

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

from slimdiff.gpu_lease import lease_gpu  # noqa: E402

# First, so every library logger writes to the rule log. The lease is ours, not to_rule_log's: a DDP training
# (training.devices = N, the rule's gpu=N) takes its N devices at once (slimdiff.gpu_lease).
to_rule_log(SimpleNamespace(**{k: getattr(snakemake, k) for k in ("log", "rule", "threads")}, resources={}))  # noqa: F821
# training.devices, not resources.gpu: Snakemake caps the resource at the global `--resources gpu=M`, but the job
# needs its N devices all the same (and the lease keeps them from any other job).
if snakemake.resources.get("gpu", 0):  # noqa: F821
    if snakemake.resources.gpu < snakemake.params.devices:  # noqa: F821
        logging.getLogger("slimdiff").warning(
            "Snakemake counts this job as gpu=%d (its --resources gpu limit) but it trains on %d devices: "
            "on a GPU machine pass --resources gpu=N with N at least that",
            snakemake.resources.gpu,  # noqa: F821
            snakemake.params.devices,  # noqa: F821
        )
    lease_gpu(snakemake.params.devices)  # noqa: F821 - held until the job's process exits, kill included

from slimdiff.experiments import expand_runs  # noqa: E402
from slimdiff.training.runner import train_run  # noqa: E402

run = snakemake.wildcards.run  # noqa: F821
# params.run_cfg is what the model depends on; the full run config adds the runtime settings (threads,
# channels_last, ...) and the sampler, which model.pt records as the defaults for sampling by hand.
run_cfg = expand_runs(snakemake.config)[run]  # noqa: F821
if run_cfg["training"]["devices"] != snakemake.params.devices:  # noqa: F821
    raise RuntimeError(f"training.devices {run_cfg['training']['devices']} != the rule's {snakemake.params.devices}")  # noqa: F821

train_run(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    Path(snakemake.output.model).parent,  # noqa: F821
    run_cfg,
    fold=int(snakemake.wildcards.fold),  # noqa: F821
    run_name=run,
    restart_on_config_change=True,  # Snakemake reruns a trained job only when its inputs or params changed
)
