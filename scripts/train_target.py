from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.train import train_target
    train_target(snakemake.params.base, snakemake.input.train, snakemake.output[0], cfg.train_target,
                 dtype=cfg.models.dtype, device=cfg.models.device, seed=int(snakemake.wildcards.seed),
                 enable_thinking=cfg.chat.enable_thinking, gpu=cfg.gpu, checkpoint_dir=snakemake.params.checkpoints)
