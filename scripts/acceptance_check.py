from specdraft.acceptance import write_check
from specdraft.workflow import step

with step(snakemake) as cfg:
    pairs = zip(snakemake.input.predictions, snakemake.input.benchmarks)
    write_check(dict(zip(snakemake.params.experiments, pairs)), cfg.bench.temperature, snakemake.output[0])
