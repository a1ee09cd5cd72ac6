# Data stage: (synthetic cohort) -> slice cache -> QC figures.


if SYNTHETIC:

    rule synth_cohort:
        output:
            cohort=directory(RAW_DIR),
        params:
            synthetic=settings("synth_cohort", "data")["synthetic"],
        threads: 8
        log:
            "results/logs/synth_cohort/synth_cohort.log",
        benchmark:
            "results/benchmarks/synth_cohort/synth_cohort.tsv"
        conda:
            "../envs/slimdiff.yaml"
        script:
            "../workflow/scripts/synth_cohort.py"


rule build_cache:
    input:
        raw=raw_input(),
    output:
        **cache_outputs(),
    params:
        data=settings("build_cache", "data"),
    threads: 8
    log:
        "results/logs/build_cache/build_cache.log",
    benchmark:
        "results/benchmarks/build_cache/build_cache.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/build_cache.py"


rule cache_qc:
    input:
        **cache_outputs(),
    output:
        montage=report(
            f"{CACHE_DIR}/qc/zbin_montage.png", caption="../report/zbin_montage.rst", category="Data"
        ),
        stats=report(f"{CACHE_DIR}/qc/cohort_stats.png", caption="../report/cohort_stats.rst", category="Data"),
        table=f"{CACHE_DIR}/qc/cohort_stats.csv",
        cohort=report(f"{CACHE_DIR}/qc/cohort.png", caption="../report/cohort.rst", category="Data"),
        cohort_table=report(f"{CACHE_DIR}/qc/cohort.csv", caption="../report/cohort_table.rst", category="Data"),
        cohort_counts=f"{CACHE_DIR}/qc/cohort_counts.csv",
    params:
        qc=settings("cache_qc", "data")["qc"],
    log:
        "results/logs/cache_qc/cache_qc.log",
    benchmark:
        "results/benchmarks/cache_qc/cache_qc.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/cache_qc.py"
