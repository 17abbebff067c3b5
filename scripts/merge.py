# Serves merge_target and merge_draft (the draft padded to the target's vocabulary).
from specdraft.plumbing.workflow import step

with step(snakemake) as cfg:
    from specdraft.stages.merge import merge_adapter
    merge_adapter(snakemake.params.base, snakemake.input.adapter, snakemake.output[0], dtype=cfg.models.dtype,
                  device=cfg.models.device, vocab_of=snakemake.params.get("vocab_of"))
