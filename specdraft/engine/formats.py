"""The engine's weight formats and the int4 layout's group size: the ground floor `quant` and the kernels share."""

MODEL_DTYPE = "model_dtype"  # the matrices kept in the model's own dtype, unquantized
WEIGHT_FORMATS = (MODEL_DTYPE, "int8", "int4")  # `engine_weights` in the config
GROUP = 128  # int4: input columns per scale
