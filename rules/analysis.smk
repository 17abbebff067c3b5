# Why the benchmark comes out as it does: exact offline acceptance (one teacher-forced pass predicts the
# bench's counts for every k), acceptance by token class, and the transfer matrix of drafts across styles.


rule acceptance:
    input:
        base_model_input("target"),
        base_model_input("draft"),
        target_adapter="results/{style}_{scenario}/target_adapter",
        draft_adapter="results/{style}_{scenario}/draft_adapter",
        test="data/processed/{style}_{scenario}/test.jsonl",
    output:
        outputs="results/{style}_{scenario}/target_outputs.jsonl",
        positions="results/{style}_{scenario}/acceptance.csv",
        predictions="results/{style}_{scenario}/acceptance_prediction.csv",
    params:
        target_base=base_model("target"),
        draft_base=base_model("draft"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        seed=config["seed"],
    log:
        "logs/acceptance/{style}_{scenario}.log",
    benchmark:
        "results/benchmarks/acceptance/{style}_{scenario}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 12 * 60,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/acceptance.py"


rule acceptance_baseline:
    input:
        base_model_input("target"),
        base_model_input("draft"),
        test=f"data/processed/{CFG.baseline.style}_{{scenario}}/test.jsonl",
    output:
        outputs="results/untrained_{scenario}/target_outputs.jsonl",
        positions="results/untrained_{scenario}/acceptance.csv",
        predictions="results/untrained_{scenario}/acceptance_prediction.csv",
    params:
        target_base=base_model("target"),
        draft_base=base_model("draft"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        seed=config["seed"],
    log:
        "logs/acceptance/untrained_{scenario}.log",
    benchmark:
        "results/benchmarks/acceptance_baseline/{scenario}.tsv"
    threads: 1
    resources:
        gpu=1,
        mem_mb=4_000 if TINY else 64_000,
        runtime=60 if TINY else 12 * 60,
    conda:
        "../envs/serve.yaml"
    script:
        "../scripts/acceptance.py"


rule acceptance_check:
    input:
        predictions=expand("results/{experiment}/acceptance_prediction.csv", experiment=EXPERIMENTS + BASELINES),
        benchmarks=expand("results/{experiment}/benchmark.csv", experiment=EXPERIMENTS + BASELINES),
    output:
        report(
            "results/acceptance_check.csv", caption="../report/acceptance_check.rst", category="4. Acceptance explained"
        ),
    params:
        experiments=EXPERIMENTS + BASELINES,
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
        expand("results/{experiment}/acceptance.csv", experiment=EXPERIMENTS + BASELINES),
    output:
        table=report(
            "results/acceptance_by_class.csv",
            caption="../report/acceptance_by_class.rst",
            category="4. Acceptance explained",
        ),
        plot=report(
            "results/plots/acceptance_by_class.png",
            caption="../report/acceptance_by_class_plot.rst",
            category="4. Acceptance explained",
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
        base_model_input("target"),
        base_model_input("draft"),
        outputs=lambda wildcards: [
            f"results/{experiment}/target_outputs.jsonl" for _, experiment in scenario_experiments(wildcards.scenario)
        ],
        draft_adapters=lambda wildcards: [
            f"results/{experiment}/draft_adapter"
            for style, experiment in scenario_experiments(wildcards.scenario)
            if style != "untrained"
        ],
    output:
        table=report(
            "results/transfer_{scenario}.csv",
            caption="../report/transfer.rst",
            category="5. Transfer across styles",
            subcategory="{scenario}",
        ),
        plot=report(
            "results/plots/transfer_{scenario}.png",
            caption="../report/transfer_plot.rst",
            category="5. Transfer across styles",
            subcategory="{scenario}",
        ),
    params:
        styles=lambda wildcards: [style for style, _ in scenario_experiments(wildcards.scenario)],
        drafts=lambda wildcards: [
            (base_model("draft"), None if style == "untrained" else f"results/{experiment}/draft_adapter")
            for style, experiment in scenario_experiments(wildcards.scenario)
        ],
        target_base=base_model("target"),
        bench=config["bench"],
        models=config["models"],
        engine=config["engine"],
        engine_weights=config["engine_weights"],
        seed=config["seed"],
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
