"""The one spelling of the styles, scenarios and engine weight formats every stage, plot and table uses."""

STYLES = ("cot", "cod")  # the reasoning styles a target is tuned to write
EXPERIMENT_STYLES = (*STYLES, "untrained")  # the untrained pair is the baseline beside them
SCENARIOS = ("easy", "medium", "hard")
MODEL_DTYPE = "model_dtype"  # the engine's matrices in the model's own dtype, unquantized
WEIGHT_FORMATS = (MODEL_DTYPE, "int8", "int4")  # `engine_weights`
INT4_GROUP = 128  # int4: input columns per scale
STYLE_NAMES = {"cot": "Chain of Thought", "cod": "Chain of Draft", "untrained": "untrained pair"}


def experiment_parts(name: str) -> tuple[str, str]:
    """`cod_hard` -> ('cod', 'hard'); `untrained_easy` -> ('untrained', 'easy')."""
    style, _, scenario = name.partition("_")
    if style not in EXPERIMENT_STYLES or scenario not in SCENARIOS:
        raise ValueError(f"experiment {name!r} is not <style>_<scenario> with style in {list(EXPERIMENT_STYLES)} "
                         f"and scenario in {list(SCENARIOS)}")
    return style, scenario
