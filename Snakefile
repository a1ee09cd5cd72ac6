# SLIM-Diff reproducibility pipeline. This file only includes rule modules and names the final targets;
# configuration, validation and input functions live in rules/common.smk.
from snakemake.utils import min_version

min_version("9.0")


# The config that runs is the one the command names: `--configfile config/paper.yaml` replaces the default
# instead of merging over it; an overlay says what it builds on with `extends:` (rules/common.smk resolves it).
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/generate.smk"
include: "rules/metrics.smk"
include: "rules/utility.smk"
include: "rules/figures.smk"


rule all:
    default_target: True
    input:
        final_targets(),


# Training, sampling and metrics without the figures (the DVC stage `compute` runs this target).
rule compute:
    input:
        computed_targets(),
