# The demo's stand-ins for the hub checkpoints: a tokenizer and two small Qwen2 models, pretrained briefly.
# With models.source: hub this rule is never needed.


rule base_models:
    input:
        gsm8k=f"{CFG.data.gsm8k.path}/train.jsonl" if CFG.data.gsm8k.kind == "local" else [],
        math=f"{CFG.data.math.path}/train.jsonl" if CFG.data.math.kind == "local" else [],
    output:
        target=directory("results/base/target"),
        draft=directory("results/base/draft"),
    params:
        tiny=config["tiny"],
        seed=config["seed"],
    log:
        "logs/base_models.log",
    benchmark:
        "results/benchmarks/base_models.tsv"
    threads: 1  # 2 torch threads on 2 busy cores thrash: 9x slower a step than 1 (issue 8)
    resources:
        mem_mb=4_000,
        runtime=60,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/base_models.py"
