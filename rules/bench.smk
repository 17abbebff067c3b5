rule bench:
    input:
        base_model_input("target"),
        base_model_input("draft"),
        target_adapter="results/{style}_{scenario}/target_adapter",
        draft_adapter="results/{style}_{scenario}/draft_adapter",
        test="data/processed/{style}_{scenario}/test.jsonl",
    output:
        "results/{style}_{scenario}/benchmark.csv",
    params:
        target_base=base_model("target"),
        draft_base=base_model("draft"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        seed=config["seed"],
    log:
        "logs/bench/{style}_{scenario}.log",
    benchmark:
        "results/benchmarks/bench/{style}_{scenario}.tsv"
    threads: 1
    resources:
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 8 * 60,
        gpu=1,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/bench.py"


rule baseline:
    input:
        base_model_input("target"),
        base_model_input("draft"),
        test=f"data/processed/{CFG.baseline.style}_{{scenario}}/test.jsonl",
    output:
        "results/untrained_{scenario}/benchmark.csv",
    params:
        target_base=base_model("target"),
        draft_base=base_model("draft"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        seed=config["seed"],
    log:
        "logs/baseline/{scenario}.log",
    benchmark:
        "results/benchmarks/baseline/{scenario}.tsv"
    threads: 1
    resources:
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 8 * 60,
        gpu=1,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/bench.py"
