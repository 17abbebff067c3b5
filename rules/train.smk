rule train_target:
    input:
        base_model_input("target"),
        train="data/processed/{style}_{scenario}/train.jsonl",
    output:
        directory("results/{style}_{scenario}/target_adapter"),
    params:
        base=base_model("target"),
        models=config["models"],
        training=config["train_target"],
        seed=config["seed"],
    log:
        "logs/train_target/{style}_{scenario}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/train_target.py"


rule train_draft:
    input:
        base_model_input("draft"),
        base_model_input("target"),
        distilled="results/{style}_{scenario}/distilled.jsonl",
    output:
        directory("results/{style}_{scenario}/draft_adapter"),
    params:
        base=base_model("draft"),
        models=config["models"],
        target_base=base_model("target"),
        training=config["train_draft"],
        seed=config["seed"],
    log:
        "logs/train_draft/{style}_{scenario}.log",
    threads: 1
    resources:
        gpu=1,
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/train_draft.py"
