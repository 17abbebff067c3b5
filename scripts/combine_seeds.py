from specdraft.plumbing.workflow import step

with step(snakemake):
    from specdraft.stages.combine_seeds import combine_seeds
    combine_seeds(snakemake.params.seeds, snakemake.input.csv, snakemake.input.run, snakemake.output.csv,
                  snakemake.output.run)
