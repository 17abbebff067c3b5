"""The one spelling of the styles and scenarios every stage, plot and table uses."""

STYLES = ("cot", "cod")  # the reasoning styles a target is tuned to write
EXPERIMENT_STYLES = (*STYLES, "untrained")  # the untrained pair is the baseline beside them
SCENARIOS = ("easy", "medium", "hard")
STYLE_NAMES = {"cot": "Chain of Thought", "cod": "Chain of Draft", "untrained": "untrained pair"}


def experiment_parts(name: str) -> tuple[str, str]:
    """`cod_hard` -> ('cod', 'hard'); `untrained_easy` -> ('untrained', 'easy')."""
    style, _, scenario = name.partition("_")
    if style not in EXPERIMENT_STYLES or scenario not in SCENARIOS:
        raise ValueError(f"experiment {name!r} is not <style>_<scenario> with style in {list(EXPERIMENT_STYLES)} "
                         f"and scenario in {list(SCENARIOS)}")
    return style, scenario
