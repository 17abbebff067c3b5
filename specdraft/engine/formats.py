"""The engine's weight formats and the int4 layout's group size: the ground floor `quant` and the kernels share."""

WEIGHT_FORMATS = ("bf16", "int8", "int4")  # `engine_weights` in the config; bf16 means the model's own dtype
GROUP = 128  # int4: input columns per scale
