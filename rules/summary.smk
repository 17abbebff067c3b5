rule summary:
    input:
        expand("results/{experiment}/benchmark.csv", experiment=EXPERIMENTS + BASELINES),
    output:
        summary=report("results/summary.csv", caption="../report/summary.rst", category="Summary"),
        acceptance_rate=report(
            "results/plots/acceptance_rate.png", caption="../report/acceptance_rate.rst", category="Plots"
        ),
        median_speedup=report(
            "results/plots/median_speedup.png", caption="../report/median_speedup.rst", category="Plots"
        ),
        tokens_per_answer=report(
            "results/plots/tokens_per_answer.png", caption="../report/tokens_per_answer.rst", category="Plots"
        ),
    params:
        experiments=EXPERIMENTS + BASELINES,
        metrics=PLOT_METRICS,
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
