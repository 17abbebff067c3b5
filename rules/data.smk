rule prepare:
    # Both styles in one job: they are always prepared on the same problems.
    input:
        source_files,
        teacher_input,
        data_files,
    output:
        cot_train="data/processed/cot_{scenario}/train.jsonl",
        cot_test="data/processed/cot_{scenario}/test.jsonl",
        cot_report="data/processed/cot_{scenario}/report.json",
        cod_train="data/processed/cod_{scenario}/train.jsonl",
        cod_test="data/processed/cod_{scenario}/test.jsonl",
        cod_report="data/processed/cod_{scenario}/report.json",
    params:
        data=config["data"],
        teacher=CFG.data.teacher or base_model("target"),
        seed=config["seed"],
        llm_rewriter=(
            [config["engine"], config["engine_weights"], config["models"]] if CFG.data.cod_rewriter == "llm" else None
        ),
    log:
        "logs/prepare/{scenario}.log",
    benchmark:
        "results/benchmarks/prepare/{scenario}.tsv"
    threads: 1
    resources:
        mem_mb=2_000 if TINY else 64_000 if CFG.data.cod_rewriter == "llm" else 8_000,
        runtime=30 if TINY else 10 * 60 if CFG.data.cod_rewriter == "llm" else 60,
        gpu=int(CFG.data.cod_rewriter == "llm"),
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/prepare.py"


rule stats:
    input:
        target_base=base_model_input("target"),
        processed=expand(
            "data/processed/{style}_{scenario}/{split}.jsonl",
            style=CFG.styles,
            scenario=CFG.scenarios,
            split=["train", "test"],
        ),
    output:
        stats=report(
            "data/processed/stats.csv", caption="../report/stats.rst", category="6. Data",
            labels={"figure": "2 the prepared data per style, scenario and split, CSV"},
        ),
        plot=report(
            "results/plots/data_tokens.png", caption="../report/data_tokens.rst", category="6. Data",
            labels={"figure": "1 tokens per training solution"},
        ),
    params:
        splits=[(st, sc, sp) for st in CFG.styles for sc in CFG.scenarios for sp in ["train", "test"]],
        tokenizer=base_model_param("target"),
    log:
        "logs/stats.log",
    benchmark:
        "results/benchmarks/stats.tsv"
    threads: 1
    resources:
        mem_mb=2_000 if TINY else 8_000,
        runtime=15 if TINY else 60,
    conda:
        "../envs/data.yaml"
    script:
        "../scripts/stats.py"
