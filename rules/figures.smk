# Figures stage: the paper table and the figures, drawn from metrics files only (cheap; runs locally).


localrules:
    paper_table,
    figures,


rule paper_table:
    input:
        summary="results/metrics/summary.json",
        table="results/metrics/summary.csv",
    output:
        csv=report("results/paper/table.csv", caption="../report/table.rst", category="Paper"),
        md="results/paper/table.md",
        tex="results/paper/table.tex",
    log:
        "results/logs/paper_table/paper_table.log",
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/paper_table.py"


rule figures:
    input:
        summary="results/metrics/summary.json",
        table="results/metrics/summary.csv",
        per_zbin=per_run_files(f"{METRICS_DIR}/per_zbin.csv"),
        morphology=per_run_files(f"{METRICS_DIR}/morphology.csv"),
        tau=per_run_files(f"{METRICS_DIR}/tau_sweep.csv"),
        logs=per_run_files(f"{TRAIN_DIR}/log.csv"),
    output:
        report(
            expand("results/figures/{stem}.{ext}", stem=FIGURES, ext=["png", "pdf"]),
            caption="../report/figures.rst",
            category="Paper",
        ),
    log:
        "results/logs/figures/figures.log",
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/figures.py"
