# Downstream utility: does the synthetic data help a lesion segmenter? A small MONAI U-Net per arm and seed,
# tested on the fold's real test slices. The real-only arm depends on the fold alone (like the real-vs-real
# baseline), so it runs once per fold; real+syn and syn run per run and fold, on the generation stage's samples.


rule utility_real:
    input:
        **cache_outputs(),
    output:
        f"{UTILITY_REAL_DIR}/utility.json",
    params:
        utility=settings("utility_real", "utility"),
        metrics=settings("utility_real", "metrics"),
    threads: config["utility"]["threads"]
    resources:
        **gpu_resources("metrics"),
    log:
        "results/logs/utility_real/fold{fold}.log",
    benchmark:
        "results/benchmarks/utility_real/fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/utility.py"


rule utility:
    input:
        **cache_outputs(),
        samples=run_samples,
    output:
        f"{UTILITY_DIR}/utility.json",
    params:
        utility=settings("utility", "utility"),
        metrics=settings("utility", "metrics"),
    threads: config["utility"]["threads"]
    resources:
        **gpu_resources("metrics"),
    log:
        "results/logs/utility/{run}_fold{fold}.log",
    benchmark:
        "results/benchmarks/utility/{run}_fold{fold}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/utility.py"
