# Serves both `bench` (tuned adapters as inputs) and `baseline` (no adapters: the vanilla models).
from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.bench import bench
    bench(snakemake.params.target_base, snakemake.params.draft_base, snakemake.input.test, snakemake.output.csv,
          cfg.bench, target_adapter=snakemake.input.get("target_adapter"),
          draft_adapter=snakemake.input.get("draft_adapter"), engine=cfg.engine, dtype=cfg.models.dtype,
          device=cfg.models.device, seed=int(snakemake.wildcards.seed), enable_thinking=cfg.chat.enable_thinking,
          gpu=cfg.gpu, engine_weights=cfg.engine_weights)
