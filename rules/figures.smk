# Figures stage: the paper table and the figures, drawn from metrics files only (cheap; runs locally).


localrules:
    paper_table,
    figures,


rule paper_table:
    input:
        summary=AGGREGATED["summary"],
        table=AGGREGATED["table"],
    output:
        csv=report(
            f"{PAPER_DIR}/table.csv",
            caption="../report/table.rst",
            category="Paper",
            subcategory="Table",
            labels={"table": "similarity by configuration"},
        ),
        md=f"{PAPER_DIR}/table.md",
        tex=f"{PAPER_DIR}/table.tex",
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
        **AGGREGATED,  # the keys of slimdiff.names.AggregatedFiles: plots.draw_figures reads them by name
    output:
        **{
            stem: report(
                f"{FIGURES_DIR}/{stem}.png",
                caption=f"../report/figures/{stem}.rst",
                category="Paper",
                subcategory="Figures",
                labels={"figure": stem.replace("_", " ")},
            )
            for stem in FIGURES
        },
        pdfs=expand(f"{FIGURES_DIR}/{{stem}}.pdf", stem=FIGURES),
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
