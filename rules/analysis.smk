# Why the benchmark comes out as it does: exact offline acceptance (one teacher-forced pass predicts the
# bench's counts for every k; every seed, checked against every seed's bench), acceptance by token class,
# and the transfer matrix of drafts across styles (those two on the first seed's models).


rule acceptance:
    input:
        target_base=base_model_input("target"),
        draft_base=base_model_input("draft"),
        target_adapter="results/{style}_{scenario}/seed{seed}/target_adapter",
        draft_adapter="results/{style}_{scenario}/seed{seed}/draft_adapter",
        test="data/processed/{style}_{scenario}/test.jsonl",
    output:
        outputs="results/{style}_{scenario}/seed{seed}/target_outputs.jsonl",
        positions="results/{style}_{scenario}/seed{seed}/acceptance.csv",
        predictions="results/{style}_{scenario}/seed{seed}/acceptance_prediction.csv",
    params:
        target_base=base_model_param("target"),
        draft_base=base_model_param("draft"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        chat=config["chat"],
    log:
        "logs/acceptance/{style}_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/acceptance/{style}_{scenario}/seed{seed}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 12 * 60,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/acceptance.py"


use rule acceptance as acceptance_baseline with:
    input:
        target_base=base_model_input("target"),
        draft_base=base_model_input("draft"),
        test=f"data/processed/{CFG.baseline.style}_{{scenario}}/test.jsonl",
    output:
        outputs="results/untrained_{scenario}/seed{seed}/target_outputs.jsonl",
        positions="results/untrained_{scenario}/seed{seed}/acceptance.csv",
        predictions="results/untrained_{scenario}/seed{seed}/acceptance_prediction.csv",
    log:
        "logs/acceptance/untrained_{scenario}/seed{seed}.log",
    benchmark:
        "results/benchmarks/acceptance_baseline/{scenario}/seed{seed}.tsv"


rule acceptance_check:
    input:
        predictions=[f"results/{e}/seed{s}/acceptance_prediction.csv" for e, s in EXPERIMENT_SEEDS],
        benchmarks=[f"results/{e}/seed{s}/benchmark.csv" for e, s in EXPERIMENT_SEEDS],
    output:
        report(
            "results/acceptance_check.csv",
            caption="../report/acceptance_check.rst",
            category="4. Acceptance explained",
            labels={"figure": "1 offline acceptance against the benchmark, CSV"},
        ),
    params:
        experiment_seeds=EXPERIMENT_SEEDS,
        bench=config["bench"],
    log:
        "logs/acceptance_check.log",
    benchmark:
        "results/benchmarks/acceptance_check.tsv"
    threads: 1
    resources:
        mem_mb=2_000,
        runtime=15,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/acceptance_check.py"


rule acceptance_by_class:
    input:
        expand("results/{experiment}/seed{seed}/acceptance.csv", experiment=EXPERIMENTS + BASELINES, seed=FIRST_SEED),
    output:
        table=report(
            "results/acceptance_by_class.csv",
            caption="../report/acceptance_by_class.rst",
            category="4. Acceptance explained",
            labels={"figure": "3 acceptance by token class, CSV"},
        ),
        plot=report(
            "results/plots/acceptance_by_class.png",
            caption="../report/acceptance_by_class_plot.rst",
            category="4. Acceptance explained",
            labels={"figure": "2 acceptance by token class"},
        ),
    params:
        experiments=EXPERIMENTS + BASELINES,
    log:
        "logs/acceptance_by_class.log",
    benchmark:
        "results/benchmarks/acceptance_by_class.tsv"
    threads: 1
    resources:
        mem_mb=2_000,
        runtime=15,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/acceptance_by_class.py"


rule transfer:
    input:
        target_base=base_model_input("target"),
        draft_base=base_model_input("draft"),
        outputs=lambda wildcards: [
            f"results/{experiment}/seed{FIRST_SEED}/target_outputs.jsonl"
            for _, experiment in scenario_experiments(wildcards.scenario)
        ],
        draft_adapters=lambda wildcards: [
            f"results/{experiment}/seed{FIRST_SEED}/draft_adapter"
            for style, experiment in scenario_experiments(wildcards.scenario)
            if style != "untrained"
        ],
    output:
        table=report(
            "results/transfer_{scenario}.csv",
            caption="../report/transfer.rst",
            category="5. Transfer across styles",
            subcategory="{scenario}",
            labels={"figure": "2 transfer matrix, CSV", "scenario": "{scenario}"},
        ),
        plot=report(
            "results/plots/transfer_{scenario}.png",
            caption="../report/transfer_plot.rst",
            category="5. Transfer across styles",
            subcategory="{scenario}",
            labels={"figure": "1 transfer matrix", "scenario": "{scenario}"},
        ),
    params:
        styles=lambda wildcards: [style for style, _ in scenario_experiments(wildcards.scenario)],
        drafts=lambda wildcards: [
            (base_model("draft"), None if style == "untrained" else f"results/{experiment}/seed{FIRST_SEED}/draft_adapter")
            for style, experiment in scenario_experiments(wildcards.scenario)
        ],
        target_base=base_model_param("target"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
    log:
        "logs/transfer/{scenario}.log",
    benchmark:
        "results/benchmarks/transfer/{scenario}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 12 * 60,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/transfer.py"
