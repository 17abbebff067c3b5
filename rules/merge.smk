# Each tuned model as a plain Hugging Face checkpoint (adapter merged), loadable with no PEFT:
#   snakemake merge --cores 1 --resources gpu=1


rule merge:
    input:
        expand("results/{experiment}/{role}_merged", experiment=EXPERIMENTS, role=["target", "draft"]),


rule merge_target:
    input:
        base_model_input("target"),
        adapter="results/{style}_{scenario}/target_adapter",
    output:
        directory("results/{style}_{scenario}/target_merged"),
    params:
        base=base_model("target"),
        models=config["models"],
    log:
        "logs/merge_target/{style}_{scenario}.log",
    benchmark:
        "results/benchmarks/merge_target/{style}_{scenario}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=config["train_target"]["mem_mb"],
        runtime=30 if TINY else 120,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/merge.py"


rule merge_draft:
    input:
        base_model_input("draft"),
        base_model_input("target"),
        adapter="results/{style}_{scenario}/draft_adapter",
    output:
        directory("results/{style}_{scenario}/draft_merged"),
    params:
        base=base_model("draft"),
        vocab_of=base_model("target"),
        models=config["models"],
    log:
        "logs/merge_draft/{style}_{scenario}.log",
    benchmark:
        "results/benchmarks/merge_draft/{style}_{scenario}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=config["train_draft"]["mem_mb"],
        runtime=30 if TINY else 30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/merge.py"
