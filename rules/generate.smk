# Generation stage: one job per run, fold, replica and z-bin (GPU-tagged), then a gather job per replica
# that draws the sample grid and concatenates the manifests.


rule generate:
    input:
        model=f"{TRAIN_DIR}/model.pt",
    output:
        samples=f"{SAMPLES_DIR}/zbin{{zbin}}.npz",
        manifest=f"{SAMPLES_DIR}/zbin{{zbin}}.csv",
    params:
        generation=GEN,
        sampler=lambda w: RUNS[w.run]["sampler"],
    threads: GEN["threads"]
    resources:
        gpu=1,
    log:
        "results/logs/generate/{run}_fold{fold}_replica{replica}_zbin{zbin}.log",
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/generate.py"


rule gather_samples:
    input:
        zbin_samples,
    output:
        grid=report(
            f"{SAMPLES_DIR}/grid.png",
            caption="../report/samples_grid.rst",
            category="Samples",
            labels={"run": "{run}", "fold": "{fold}", "replica": "{replica}"},
        ),
        manifest=f"{SAMPLES_DIR}/manifest.csv",
    log:
        "results/logs/gather_samples/{run}_fold{fold}_replica{replica}.log",
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/gather_samples.py"
