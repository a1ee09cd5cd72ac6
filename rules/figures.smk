# Figures stage: the paper table and the figures, drawn from metrics files only (cheap; runs locally).


localrules:
    paper_table,
    figures,


rule paper_table:
    input:
        summary="results/metrics/summary.json",
        table="results/metrics/summary.csv",
    output:
        csv=report(
            "results/paper/table.csv",
            caption="../report/table.rst",
            category="Paper",
            subcategory="Table",
            labels={"table": "similarity by configuration"},
        ),
        md="results/paper/table.md",
        tex="results/paper/table.tex",
    log:
        "results/logs/paper_table/paper_table.log",
    benchmark:
        "results/benchmarks/paper_table/paper_table.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/paper_table.py"


rule figures:
    input:
        summary="results/metrics/summary.json",
        table="results/metrics/summary.csv",
        per_zbin="results/metrics/per_zbin.csv",
        morphology="results/metrics/morphology.csv",
        tau="results/metrics/tau_sweep.csv",
        lesions="results/metrics/lesions.csv",
        curves="results/metrics/training_curves.csv",
    output:
        **{
            stem: report(
                f"results/figures/{stem}.png",
                caption=f"../report/figures/{stem}.rst",
                category="Paper",
                subcategory="Figures",
                labels={"figure": stem.replace("_", " ")},
            )
            for stem in FIGURES
        },
        pdfs=expand("results/figures/{stem}.pdf", stem=FIGURES),
    params:
        style=settings("figures", "figures"),
    log:
        "results/logs/figures/figures.log",
    benchmark:
        "results/benchmarks/figures/figures.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/figures.py"
