from specdraft.summary import write_summary
from specdraft.workflow import step

with step(snakemake) as cfg:
    write_summary(dict(zip(snakemake.params.experiments, snakemake.input)), dict(snakemake.output.items()),
                  resamples=cfg.summary.bootstrap_resamples, seed=cfg.seed)
