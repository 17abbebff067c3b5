from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.distill import distill
    distill(snakemake.params.base, snakemake.input.adapter, snakemake.input.train, snakemake.output[0],
            cfg.distill, engine=cfg.engine, dtype=cfg.models.dtype, device=cfg.models.device,
            seed=int(snakemake.wildcards.seed), enable_thinking=cfg.chat.enable_thinking, gpu=cfg.gpu,
            engine_weights=cfg.engine_weights)
