# Serves merge_target and merge_draft (the draft padded to the target's vocabulary).
from specdraft.workflow import step

with step(snakemake) as cfg:
    from specdraft.merge import merge_adapter
    merge_adapter(snakemake.params.base, snakemake.input.adapter, snakemake.output[0], dtype=cfg.models.dtype,
                  device=cfg.models.device, vocab_of=snakemake.params.get("vocab_of"))
