from specdraft.data.prepare import prepare
from specdraft.workflow import step

with step(snakemake) as cfg:
    prepare(snakemake.wildcards.style, snakemake.wildcards.scenario, cfg.data, cfg.seed,
            snakemake.output.train, snakemake.output.test)
