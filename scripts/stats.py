from specdraft.plumbing.workflow import step

with step(snakemake):
    from specdraft.data.stats import write_stats
    write_stats(dict(zip(map(tuple, snakemake.params.splits), snakemake.input.processed)), snakemake.params.tokenizer,
                snakemake.output.stats, snakemake.output.plot)
