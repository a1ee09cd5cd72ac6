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


# Raw FLAIR as acquired -> BIDS derivatives (skull-stripped, N4, KDE), one job per subject, then a gathering
# job (QC, participants.tsv) that the cache reads. Skipped when every step is off (config `preprocess`).
if PREPROCESS_ON:

    rule preprocess:
        input:
            raw=raw_input(),
        output:
            # the subject's contour figure (mask over the head as acquired, and the result) goes to the report
            subject=report(
                directory(f"{PREPROCESSED_DIR}/{{subject}}"),
                patterns=["figures/{figure}.png"],
                caption="../report/preprocess_subject.rst",
                category="Data",
                subcategory="Brain masks (preprocess)",
            ),
        params:
            preprocess=settings("preprocess", "preprocess"),
        threads: 2
        resources:
            **(gpu_resources("preprocess") if HDBET_GPU else {}),
        log:
            "results/logs/preprocess/{subject}.log",
        benchmark:
            "results/benchmarks/preprocess/{subject}.tsv"
        conda:
            "../envs/slimdiff.yaml"
        script:
            "../workflow/scripts/preprocess.py"

    rule preprocess_cohort:
        input:
            raw=raw_input(),
            subjects=expand(f"{PREPROCESSED_DIR}/{{subject}}", subject=PREPROCESS_SUBJECTS),
        output:
            participants=f"{PREPROCESSED_DIR}/participants.tsv",
            description=f"{PREPROCESSED_DIR}/dataset_description.json",
            table=f"{PREPROCESSED_DIR}/qc/cohort.csv",
            rejected=f"{PREPROCESSED_DIR}/qc/rejected.csv",
            figure=report(
                f"{PREPROCESSED_DIR}/qc/cohort.png", caption="../report/preprocess_cohort.rst", category="Data"
            ),
        params:
            qc=settings("preprocess_cohort", "preprocess"),
            on_bad_subject=settings("preprocess_cohort", "data")["ingest"]["on_bad_subject"],
        log:
            "results/logs/preprocess_cohort/preprocess_cohort.log",
        benchmark:
            "results/benchmarks/preprocess_cohort/preprocess_cohort.tsv"
        conda:
            "../envs/slimdiff.yaml"
        script:
            "../workflow/scripts/preprocess_cohort.py"


rule build_cache:
    input:
        raw=raw_input(),
        **preprocessed_input(),
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
