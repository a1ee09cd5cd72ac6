"""Rule train: one run of the experiment grid on one fold (resumes from last.ckpt after a kill)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.experiments import expand_runs  # noqa: E402
from slimdiff.training.runner import train_run  # noqa: E402

run = snakemake.wildcards.run  # noqa: F821
# The sampler is not a training parameter (not in params: changing it must not retrain); model.pt records the
# run's current sampler settings as the defaults for sampling by hand.
sampler = expand_runs(snakemake.config)[run]["sampler"]  # noqa: F821

train_run(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    Path(snakemake.output.model).parent,  # noqa: F821
    {**snakemake.params.run_cfg, "sampler": sampler},  # noqa: F821
    fold=int(snakemake.wildcards.fold),  # noqa: F821
    run_name=run,
    restart_on_config_change=True,  # Snakemake reruns a trained job only when its inputs or params changed
)
