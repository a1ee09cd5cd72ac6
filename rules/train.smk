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
