# Serves both `acceptance` (tuned adapters as inputs) and `acceptance_baseline` (no adapters: the vanilla models).
from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.analysis.offline_acceptance import acceptance
    acceptance(snakemake.params.target_base, snakemake.params.draft_base, snakemake.input.test, cfg.bench,
               outputs_path=snakemake.output.outputs, positions_path=snakemake.output.positions,
               predictions_path=snakemake.output.predictions, target_adapter=snakemake.input.get("target_adapter"),
               draft_adapter=snakemake.input.get("draft_adapter"), engine=cfg.engine, dtype=cfg.models.dtype,
               device=cfg.models.device, enable_thinking=cfg.chat.enable_thinking, engine_weights=cfg.engine_weights)
