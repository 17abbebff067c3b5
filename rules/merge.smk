# Each tuned model as a plain Hugging Face checkpoint (adapter merged), loadable with no PEFT:
#   snakemake merge --cores 1 --resources gpu=1   (every seed's)


rule merge:
    input:
        expand("results/{experiment}/seed{seed}/{role}_merged", experiment=EXPERIMENTS, seed=CFG.seeds,
               role=["target", "draft"]),


rule merge_target:
    input:
        target_base=base_model_input("target"),
        adapter="results/{style}_{scenario}/seed{seed}/target_adapter",
    output:
        directory("results/{style}_{scenario}/seed{seed}/target_merged"),
    params:
        base=base_model_param("target"),
        models=config["models"],
    log:
        "logs/merge_target/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/merge_target/{style}_{scenario}/seed{seed}.tsv"
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
        draft_base=base_model_input("draft"),
        target_base=base_model_input("target"),
        adapter="results/{style}_{scenario}/seed{seed}/draft_adapter",
    output:
        directory("results/{style}_{scenario}/seed{seed}/draft_merged"),
    params:
        base=base_model_param("draft"),
        vocab_of=base_model_param("target"),
        models=config["models"],
    log:
        "logs/merge_draft/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/merge_draft/{style}_{scenario}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=config["train_draft"]["mem_mb"],
        runtime=30,
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/merge.py"
