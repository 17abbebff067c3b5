from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.analysis.offline_acceptance import write_check
    pairs = zip(snakemake.input.predictions, snakemake.input.benchmarks)
    keys = [tuple(pair) for pair in snakemake.params.experiment_seeds]
    write_check(dict(zip(keys, pairs)), cfg.bench.temperature, snakemake.output[0])
