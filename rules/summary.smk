# The report's categories are listed alphabetically, hence the numbers: the CoD-vs-CoT comparison comes first.
COMPARISON = "1. CoD vs CoT"


rule summary:
    input:
        benchmarks=expand("results/{experiment}/benchmark.csv", experiment=EXPERIMENTS + BASELINES),
        runs=expand("results/{experiment}/benchmark_run.json", experiment=EXPERIMENTS + BASELINES),
    output:
        latency_per_correct=report(
            "results/plots/latency_per_correct.png",
            caption="../report/latency_per_correct.rst",
            category=COMPARISON,
            labels={"figure": "1 latency per correct answer (headline)"},
        ),
        cod_vs_cot=report(
            "results/plots/cod_vs_cot.png",
            caption="../report/cod_vs_cot.rst",
            category=COMPARISON,
            labels={"figure": "2 CoD minus CoT, with intervals"},
        ),
        comparison_table=report(
            "results/report/cod_vs_cot.html",
            caption="../report/cod_vs_cot_table.rst",
            category=COMPARISON,
            labels={"figure": "3 CoD minus CoT, table in words"},
        ),
        comparison=report(
            "results/cod_vs_cot.csv",
            caption="../report/cod_vs_cot_table.rst",
            category=COMPARISON,
            labels={"figure": "4 CoD minus CoT, CSV"},
        ),
        summary_table=report(
            "results/report/summary.html", caption="../report/summary.rst", category="2. Summary",
            labels={"table": "1 summary"},
        ),
        summary=report(
            "results/summary.csv", caption="../report/summary.rst", category="2. Summary",
            labels={"table": "2 summary, CSV"},
        ),
        published_table=report(
            "results/report/published.html", caption="../report/published.rst", category="2. Summary",
            labels={"table": "3 the published project's table beside ours"},
        ),
        speedup=report(
            "results/plots/speedup.png", caption="../report/speedup.rst", category="3. Plots",
            labels={"figure": "1 speedup"},
        ),
        predicted_speedup=report(
            "results/plots/predicted_speedup.png", caption="../report/predicted_speedup.rst", category="3. Plots",
            labels={"figure": "2 predicted vs measured speedup"},
        ),
        acceptance_rate=report(
            "results/plots/acceptance_rate.png", caption="../report/acceptance_rate.rst", category="3. Plots",
            labels={"figure": "3 acceptance rate"},
        ),
        tokens_per_answer=report(
            "results/plots/tokens_per_answer.png", caption="../report/tokens_per_answer.rst", category="3. Plots",
            labels={"figure": "4 tokens per answer"},
        ),
    params:
        experiments=EXPERIMENTS + BASELINES,
        summary=config["summary"],
        seed=config["seed"],
    log:
        "logs/summary.log",
    benchmark:
        "results/benchmarks/summary.tsv"
    threads: 1
    resources:
        mem_mb=2_000 if TINY else 4_000,
        runtime=15 if TINY else 30,
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/summary.py"
