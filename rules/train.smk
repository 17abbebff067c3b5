rule train_target:
    input:
        target_base=base_model_input("target"),
        train="data/processed/{style}_{scenario}/train.jsonl",
    output:
        directory("results/{style}_{scenario}/seed{seed}/target_adapter"),
    params:
        base=base_model_param("target"),
        models=config["models"],
        training=config["train_target"],
        chat=config["chat"],
        # Outside the output: Snakemake deletes a failed job's output, a killed job's checkpoints must survive.
        checkpoints="results/{style}_{scenario}/seed{seed}/checkpoints/target",
    log:
        "logs/train_target/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_target/{style}_{scenario}/seed{seed}.tsv"
    threads: 1
    resources:
        runtime=60 if TINY else 12 * 60,
        gpu=CFG.train_target.num_gpus,
        mem_mb=config["train_target"]["mem_mb"],
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_target.py"


rule train_draft:
    input:
        draft_base=base_model_input("draft"),
        target_base=base_model_input("target"),
        distilled="results/{style}_{scenario}/seed{seed}/distilled.jsonl",
    output:
        directory("results/{style}_{scenario}/seed{seed}/draft_adapter"),
    params:
        base=base_model_param("draft"),
        models=config["models"],
        target_base=base_model_param("target"),
        training=config["train_draft"],
        chat=config["chat"],
        # Outside the output: Snakemake deletes a failed job's output, a killed job's checkpoints must survive.
        checkpoints="results/{style}_{scenario}/seed{seed}/checkpoints/draft",
    log:
        "logs/train_draft/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/train_draft/{style}_{scenario}/seed{seed}.tsv"
    threads: 1
    resources:
        runtime=60 if TINY else 8 * 60,
        gpu=CFG.train_draft.num_gpus,
        mem_mb=config["train_draft"]["mem_mb"],
    conda:
        "../envs/train.yaml"
    script:
        "../scripts/train_draft.py"
