from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.summary import write_summary
    experiments = snakemake.params.experiments
    write_summary(dict(zip(experiments, snakemake.input.benchmarks)), dict(zip(experiments, snakemake.input.runs)),
                  dict(snakemake.output.items()), resamples=cfg.summary.bootstrap_resamples, seed=cfg.seed,
                  primary_statistic=cfg.summary.primary.statistic, primary_k=cfg.summary.primary.k)
