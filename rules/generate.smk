# Generation stage: one job per run, fold, replica and z-bin (GPU-tagged), then a gather job per replica
# that draws the sample grid and concatenates the manifests.
#
# generation.job_unit: replica makes one job sample every z-bin of a replica instead (see rules/common.smk).

rule generate:
    input:
        model=f"{TRAIN_DIR}/model.pt",
    output:
        samples=generate_outputs("npz"),
        manifests=generate_outputs("csv"),
    params:
        generation=run_generation,  # the run's protocol: its samples per condition
        sampler=run_sampler,
    threads: GEN["threads"]
    resources:
        **gpu_resources("generate"),
    log:
        f"results/logs/generate/{GENERATE_JOB}.log",
    benchmark:
        f"results/benchmarks/generate/{GENERATE_JOB}.tsv"
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
    benchmark:
        "results/benchmarks/gather_samples/{run}_fold{fold}_replica{replica}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/gather_samples.py"


rule zbin_panels:
    input:
        [path for rows in zbin_panel_rows().values() for _, path in rows],
    output:
        **{
            f"zbin{z}": report(
                f"results/samples/zbin{z}.png",
                caption="../report/zbin_panel.rst",
                category="Samples",
                subcategory="Per z-bin, all runs",
                labels={"zbin": z},
            )
            for z in ZBINS
        },
    params:
        rows=zbin_panel_rows(),
    log:
        "results/logs/zbin_panels/zbin_panels.log",
    benchmark:
        "results/benchmarks/zbin_panels/zbin_panels.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/zbin_panels.py"
