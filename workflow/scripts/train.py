"""Rule train: one run of the experiment grid on one fold (resumes from last.ckpt after a kill)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _log import to_rule_log  # noqa: E402

to_rule_log(snakemake)  # noqa: F821 - first, so every library logger writes to the rule log

from slimdiff.experiments import expand_runs  # noqa: E402
from slimdiff.training.runner import train_run  # noqa: E402

run = snakemake.wildcards.run  # noqa: F821
# params.run_cfg is what the model depends on; the full run config adds the runtime settings (threads,
# channels_last, ...) and the sampler, which model.pt records as the defaults for sampling by hand.
run_cfg = expand_runs(snakemake.config)[run]  # noqa: F821

train_run(
    Path(snakemake.input.cache_meta).parent,  # noqa: F821
    Path(snakemake.output.model).parent,  # noqa: F821
    run_cfg,
    fold=int(snakemake.wildcards.fold),  # noqa: F821
    run_name=run,
    restart_on_config_change=True,  # Snakemake reruns a trained job only when its inputs or params changed
)
