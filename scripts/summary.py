from specdraft.summary import write_summary
from specdraft.workflow import step

with step(snakemake):
    write_summary(dict(zip(snakemake.params.experiments, snakemake.input)), snakemake.output.summary,
                  {metric: snakemake.output[metric] for metric in snakemake.params.metrics})
