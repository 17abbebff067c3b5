from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.models.loading import vocab_size_of
    from specdraft.analysis.transfer import transfer
    styles = snakemake.params.styles
    transfer(snakemake.wildcards.scenario, dict(zip(styles, snakemake.input.outputs)),
             dict(zip(styles, snakemake.params.drafts)), ks=cfg.bench.num_speculative_tokens,
             max_new_tokens=cfg.bench.max_new_tokens, vocab_size=vocab_size_of(snakemake.params.target_base),
             table_path=snakemake.output.table, plot_path=snakemake.output.plot, engine=cfg.engine,
             dtype=cfg.models.dtype, device=cfg.models.device, engine_weights=cfg.engine_weights)
