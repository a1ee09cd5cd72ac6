# Training stage: one job per run of the experiment grid and per fold. GPU-tagged: `--resources gpu=N`
# caps concurrent GPU jobs; the job itself uses CUDA when visible, else the CPU (its log says which).


rule train:
    input:
        **cache_outputs(),
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
    threads: config["training"]["threads"]
    # Trainings are the long jobs: start every one as early as the cores allow, and fill the gaps with sampling
    # and metrics of the runs already trained.
    priority: 10
    resources:
        **gpu_resources("train"),
    log:
        "results/logs/train/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/train/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/train.py"
