from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.base_models import build_base_models
    build_base_models(cfg.tiny, cfg.data, cfg.seed, snakemake.output.target, snakemake.output.draft)
