from specdraft.class_acceptance import write_class_acceptance
from specdraft.workflow import step

with step(snakemake):
    write_class_acceptance(dict(zip(snakemake.params.experiments, snakemake.input)), snakemake.output.table,
                           snakemake.output.plot)
