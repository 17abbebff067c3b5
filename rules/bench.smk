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
        seed=config["seed"],
    log:
        "logs/bench/{style}_{scenario}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/specdraft.yaml"
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
        seed=config["seed"],
    log:
        "logs/baseline/{scenario}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/bench.py"
