rule distill:
    input:
        base_model_input("target"),
        adapter="results/{style}_{scenario}/target_adapter",
        train="data/processed/{style}_{scenario}/train.jsonl",
    output:
        "results/{style}_{scenario}/distilled.jsonl",
    params:
        base=base_model("target"),
        models=config["models"],
        distill=config["distill"],
        engine=config["engine"],
        seed=config["seed"],
    log:
        "logs/distill/{style}_{scenario}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/distill.py"
