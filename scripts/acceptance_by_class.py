from specdraft.workflow import step

with step(snakemake):
    from specdraft.class_acceptance import write_class_acceptance
    write_class_acceptance(dict(zip(snakemake.params.experiments, snakemake.input)), snakemake.output.table,
                           snakemake.output.plot)
