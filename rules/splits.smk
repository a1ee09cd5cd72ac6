# Protocol splits: for each protocol with a split of its own (config `protocols`), a view of the cache with that
# split's folds and the cache's test set (slimdiff.data.splits.write_split_view). Runs of the protocol train,
# sample and score against the view; the cache itself is built once for every protocol.


localrules:
    split_view,


rule split_view:
    input:
        **cache_outputs(),
    output:
        **{Path(name).stem.replace(".", "_"): f"{SPLIT_DIR}/{name}" for name in SPLIT_FILES},
    params:
        split=lambda w: PROTOCOLS[w.protocol]["split"],
    log:
        "results/logs/split_view/{protocol}.log",
    benchmark:
        "results/benchmarks/split_view/{protocol}.tsv"
    conda:
        "../envs/slimdiff.yaml"
    script:
        "../workflow/scripts/split_view.py"
