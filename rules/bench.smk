rule bench:
    input:
        target_base=base_model_input("target"),
        draft_base=base_model_input("draft"),
        target_adapter="results/{style}_{scenario}/seed{seed}/target_adapter",
        draft_adapter="results/{style}_{scenario}/seed{seed}/draft_adapter",
        test="data/processed/{style}_{scenario}/test.jsonl",
    output:
        csv="results/{style}_{scenario}/seed{seed}/benchmark.csv",
        run="results/{style}_{scenario}/seed{seed}/benchmark_run.json",
    params:
        target_base=base_model_param("target"),
        draft_base=base_model_param("draft"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        chat=config["chat"],
    log:
        "logs/bench/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/bench/{style}_{scenario}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 8 * 60,
        gpu=1,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/bench.py"


# The untrained pair is benchmarked once per seed too: its sampling and timings are the seed's, and every
# experiment then has the same shape.
use rule bench as baseline with:
    input:
        target_base=base_model_input("target"),
        draft_base=base_model_input("draft"),
        test=f"data/processed/{CFG.baseline.style}_{{scenario}}/test.jsonl",
    output:
        csv="results/untrained_{scenario}/seed{seed}/benchmark.csv",
        run="results/untrained_{scenario}/seed{seed}/benchmark_run.json",
    log:
        "logs/baseline/{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/baseline/{scenario}/seed{seed}.tsv"


rule combine_seeds:
    # Every seed's rows in one table with a `seed` column, and every seed's run conditions: what the
    # summary reads, and what `snakemake results/cod_hard/benchmark.csv` builds.
    input:
        csv=expand("results/{{experiment}}/seed{seed}/benchmark.csv", seed=CFG.seeds),
        run=expand("results/{{experiment}}/seed{seed}/benchmark_run.json", seed=CFG.seeds),
    output:
        csv="results/{experiment}/benchmark.csv",
        run="results/{experiment}/benchmark_run.json",
    params:
        seeds=CFG.seeds,
    log:
        "logs/combine_seeds/{experiment}.log",
    benchmark:
        "results/benchmarks/combine_seeds/{experiment}.tsv"
    threads: 1
    resources:
        mem_mb=1_000,
        runtime=5,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/combine_seeds.py"
