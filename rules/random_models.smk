# models.source: random — weightless checkpoints of the named architectures (shipped config.json, tokenizer,
# seed); every stage draws the same random weights from them on its device. Nothing is downloaded.


rule random_base:
    output:
        directory("results/random_base/{role}"),
    params:
        name=lambda wildcards: getattr(CFG.models, wildcards.role),
        models=config["models"],
        seed=config["seed"],
    log:
        "logs/random_base/{role}.log",
    benchmark:
        "results/benchmarks/random_base/{role}.tsv"
    wildcard_constraints:
        role="target|draft",
    threads: 1
    resources:
        mem_mb=2_000,
        runtime=10,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/random_base.py"
