rule prepare:
    input:
        source_files,
        teacher_input,
    output:
        train="data/processed/{style}_{scenario}/train.jsonl",
        test="data/processed/{style}_{scenario}/test.jsonl",
        report="data/processed/{style}_{scenario}/report.json",
    params:
        data=config["data"],
        teacher=CFG.data.teacher or base_model("target"),
        seed=config["seed"],
        llm_rewriter=lambda wildcards: (
            [config["engine"], config["models"]] if wildcards.style == "cod" and CFG.data.cod_rewriter == "llm" else None
        ),
    log:
        "logs/prepare/{style}_{scenario}.log",
    threads: 1
    resources:
        gpu=lambda wildcards: int(wildcards.style == "cod" and CFG.data.cod_rewriter == "llm"),
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/prepare.py"


rule stats:
    input:
        base_model_input("target"),
        processed=expand(
            "data/processed/{style}_{scenario}/{split}.jsonl",
            style=CFG.styles,
            scenario=CFG.scenarios,
            split=["train", "test"],
        ),
    output:
        stats=report("data/processed/stats.csv", caption="../report/stats.rst", category="Data"),
        plot=report("results/plots/data_tokens.png", caption="../report/data_tokens.rst", category="Data"),
    params:
        splits=[(st, sc, sp) for st in CFG.styles for sc in CFG.scenarios for sp in ["train", "test"]],
        tokenizer=base_model("target"),
    log:
        "logs/stats.log",
    threads: 1
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/stats.py"
