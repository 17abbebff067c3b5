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
    threads: 1
    resources:
        gpu=1,
        mem_mb=config["train_target"]["mem_mb"],
    conda:
        "../envs/specdraft.yaml"
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
    threads: 1
    resources:
        gpu=1,
        mem_mb=config["train_draft"]["mem_mb"],
    conda:
        "../envs/specdraft.yaml"
    script:
        "../scripts/merge.py"
