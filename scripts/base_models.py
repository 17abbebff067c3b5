from specdraft.workflow import step

with step(snakemake) as cfg:
    from specdraft.tiny import build_base_models
    build_base_models(cfg.tiny, cfg.data, cfg.seed, snakemake.output.target, snakemake.output.draft)
