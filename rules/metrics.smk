# Metrics stage: weights -> per run and fold image metrics (Inception, LPIPS; GPU-tagged) and mask metrics
# (CPU) -> metrics.json; the real-vs-real baseline; one summary over all runs.


localrules:
    metric_weights,
    run_metrics,
    aggregate_metrics,


rule metric_weights:
    output:
        "results/metrics/weights.json",
    params:
        metrics=settings("metric_weights", "metrics"),
    log:
        "results/logs/metric_weights/metric_weights.log",
    benchmark:
        "results/benchmarks/metric_weights/metric_weights.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/metric_weights.py"


rule metrics_image:
    input:
        unpack(split_inputs),  # the run's protocol split: same test set, its folds' training slices
        weights="results/metrics/weights.json",
        samples=run_samples,
    output:
        image=f"{METRICS_DIR}/image.json",
        per_zbin=f"{METRICS_DIR}/per_zbin.csv",
    params:
        metrics=settings("metrics_image", "metrics"),
        scoring=run_scoring,  # Regime A (per replica) or B (merged pool), from the run's protocol
        feature_cache=FEATURE_CACHE,
    threads: config["metrics"]["threads"]
    resources:
        **gpu_resources("metrics"),
    log:
        "results/logs/metrics_image/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/metrics_image/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/metrics_image.py"


rule metrics_mask:
    input:
        unpack(split_inputs),
        samples=run_samples,
    output:
        mask=f"{METRICS_DIR}/mask.json",
        morphology=f"{METRICS_DIR}/morphology.csv",
        tau_sweep=f"{METRICS_DIR}/tau_sweep.csv",
        lesions=f"{METRICS_DIR}/lesions.csv",
    params:
        metrics=settings("metrics_mask", "metrics"),
        scoring=run_scoring,
    log:
        "results/logs/metrics_mask/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/metrics_mask/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/metrics_mask.py"


rule run_metrics:
    input:
        image=f"{METRICS_DIR}/image.json",
        mask=f"{METRICS_DIR}/mask.json",
    output:
        f"{METRICS_DIR}/metrics.json",
    log:
        "results/logs/run_metrics/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/run_metrics/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/run_metrics.py"


rule baseline:
    input:
        **cache_outputs(),
        weights="results/metrics/weights.json",
    output:
        "results/metrics/baseline.json",
    params:
        metrics=settings("baseline", "metrics"),
        feature_cache=FEATURE_CACHE,
    threads: config["metrics"]["threads"]
    resources:
        **gpu_resources("metrics"),
    log:
        "results/logs/baseline/baseline.log",
    benchmark:
        "results/benchmarks/baseline/baseline.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/baseline.py"


rule aggregate_metrics:
    input:
        runs=run_metrics(),
        baseline="results/metrics/baseline.json",
        weights="results/metrics/weights.json",
        per_zbin=per_run_files(f"{METRICS_DIR}/per_zbin.csv"),
        morphology=per_run_files(f"{METRICS_DIR}/morphology.csv"),
        tau=per_run_files(f"{METRICS_DIR}/tau_sweep.csv"),
        lesions=per_run_files(f"{METRICS_DIR}/lesions.csv"),
        logs=per_run_files(f"{TRAIN_DIR}/log.csv", TRAINED_RUN_FOLDS),
        **utility_files(),
    output:
        **AGGREGATED,  # summary.json, summary.csv and the stacked per-run tables, by key
        headline=directory(f"{AGGREGATE_DIR}/headline"),  # DVC's metrics: one flat JSON per run and fold
    params:
        run_folds=RUN_FOLDS,  # the (run, fold) of each per_run_files() input, in the same order
        trained_run_folds=TRAINED_RUN_FOLDS,  # the same for the training logs (pretrained runs have none)
    log:
        "results/logs/aggregate_metrics/aggregate_metrics.log",
    benchmark:
        "results/benchmarks/aggregate_metrics/aggregate_metrics.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/aggregate_metrics.py"
