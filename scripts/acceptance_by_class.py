from specdraft.plumbing.workflow import step

with step(snakemake):
    from specdraft.analysis.class_acceptance import write_class_acceptance
    write_class_acceptance(dict(zip(snakemake.params.experiments, snakemake.input)), snakemake.output.table,
                           snakemake.output.plot)
