from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.models.random_weights import write_random_checkpoint
    write_random_checkpoint(snakemake.params.name, cfg.seed, snakemake.output[0], cfg.models.random_overrides)
