def source_files(wildcards):
    """Local source files the scenario reads (hub sources are fetched by the job itself)."""
    source = CFG.data.gsm8k if wildcards.scenario == "easy" else CFG.data.math
    if source.kind != "local":
        return []
    return [f"{source.path}/train.jsonl", f"{source.path}/test.jsonl"]


rule prepare:
    input:
        source_files,
    output:
        train="data/processed/{style}_{scenario}/train.jsonl",
        test="data/processed/{style}_{scenario}/test.jsonl",
    params:
        data=config["data"],
    log:
        "logs/prepare/{style}_{scenario}.log",
    threads: 1
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/prepare.py"
