from specdraft.workflow import step

with step(snakemake) as cfg:
    from specdraft.random_models import write_random_checkpoint
    write_random_checkpoint(snakemake.params.name, cfg.seed, snakemake.output[0], cfg.models.random_overrides)
