# Training stage: one job per run of the experiment grid and per fold. GPU-tagged: `--resources gpu=N`
# caps concurrent GPU jobs; the job itself uses CUDA when visible, else the CPU (its log says which).
# A run with training.devices = N trains with DDP on N devices: the job asks for gpu=N (a workstation leases N
# devices at once) and, under SLURM, for N tasks on one node with N GPUs (slimdiff/training/ddp.py).

from slimdiff.training.ddp import devices_param, train_resources


rule train:
    wildcard_constraints:
        run=either_of([r for r in RUNS if r not in PRETRAINED]),
    input:
        unpack(split_inputs),  # the cache, or the run's protocol split view
    output:
        model=f"{TRAIN_DIR}/model.pt",
        log_csv=f"{TRAIN_DIR}/log.csv",
        plot=report(
            f"{TRAIN_DIR}/loss.png",
            caption="../report/loss.rst",
            category="Training",
            labels={"run": "{run}", "fold": "{fold}"},
        ),
    params:
        run_cfg=run_config,
        devices=devices_param(RUNS),  # also in run_cfg (it sets the effective batch); the job's resources follow it
    threads: config["training"]["threads"]
    # Trainings are the long jobs: start every one as early as the cores allow, and fill the gaps with sampling
    # and metrics of the runs already trained.
    priority: 10
    resources:
        **train_resources(gpu_resources("train"), RUNS, on_cluster=lambda: workflow.non_local_exec),
    log:
        "results/logs/train/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/train/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/train.py"


# A run whose grid names a `pretrained` model: the model stands in for the training (an upstream checkpoint is
# converted, a model.pt copied), after checks that it fits the cache and is the model the grid describes.
rule import_pretrained:
    wildcard_constraints:
        run=either_of(PRETRAINED),
    input:
        model=pretrained_file,
        cache_meta=f"{CACHE_DIR}/cache_meta.json",
    output:
        model=f"{TRAIN_DIR}/model.pt",
    params:
        pretrained=lambda w: PRETRAINED[w.run],
        claimed=pretrained_claims,
    log:
        "results/logs/import_pretrained/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/import_pretrained/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/import_pretrained.py"
