rule distill:
    input:
        target_base=base_model_input("target"),
        adapter="results/{style}_{scenario}/seed{seed}/target_adapter",
        train="data/processed/{style}_{scenario}/train.jsonl",
    output:
        "results/{style}_{scenario}/seed{seed}/distilled.jsonl",
    params:
        base=base_model_param("target"),
        models=config["models"],
        distill=config["distill"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        chat=config["chat"],
    log:
        "logs/distill/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/distill/{style}_{scenario}/seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 8 * 60,
        gpu=1,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/distill.py"
