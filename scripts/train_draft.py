from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.train import train_draft
    train_draft(snakemake.params.base, snakemake.params.target_base, snakemake.input.distilled,
                snakemake.output[0], cfg.train_draft, dtype=cfg.models.dtype, device=cfg.models.device,
                seed=int(snakemake.wildcards.seed), enable_thinking=cfg.chat.enable_thinking, gpu=cfg.gpu,
                checkpoint_dir=snakemake.params.checkpoints)
