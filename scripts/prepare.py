from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.data.prepare import StylePaths, llm_rewriter, prepare
    out = snakemake.output
    outputs = {style: StylePaths(out[f"{style}_train"], out[f"{style}_test"], out[f"{style}_report"])
               for style in ("cot", "cod")}
    rewriter = None
    if cfg.data.cod_rewriter == "llm":  # the teacher loads on its first rewrite, after every input is checked
        rewriter = llm_rewriter(snakemake.params.teacher, cfg.data, engine=cfg.engine, dtype=cfg.models.dtype,
                                device=cfg.models.device, seed=cfg.seed, enable_thinking=cfg.chat.enable_thinking,
                                engine_weights=cfg.engine_weights)
    prepare(snakemake.wildcards.scenario, cfg.data, cfg.seed, outputs, rewriter)
