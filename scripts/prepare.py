from specdraft.data.prepare import llm_rewriter, prepare
from specdraft.workflow import step

with step(snakemake) as cfg:
    style, scenario = snakemake.wildcards.style, snakemake.wildcards.scenario
    rewriter = None
    if style == "cod" and cfg.data.cod_rewriter == "llm":
        rewriter = llm_rewriter(snakemake.params.teacher, cfg.data, engine=cfg.engine, dtype=cfg.models.dtype,
                                device=cfg.models.device, seed=cfg.seed, engine_weights=cfg.engine_weights)
    prepare(style, scenario, cfg.data, cfg.seed, snakemake.output.train, snakemake.output.test,
            snakemake.output.report, rewriter)
