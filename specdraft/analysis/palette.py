"""The report's colours, one per style in every plot: Okabe-Ito blue and vermilion (colour-blind safe), grey."""

from __future__ import annotations
from specdraft.plumbing.names import EXPERIMENT_STYLES

STYLE_ORDER = EXPERIMENT_STYLES
STYLE_COLOURS = {"cot": "#0072B2", "cod": "#D55E00", "untrained": "#8C8C8C"}


def style_colour(style: str) -> str:
    """The colour of `style` ('cot', 'cod' or 'untrained')."""
    if style not in STYLE_COLOURS:
        raise ValueError(f"no colour for style {style!r}; known styles: {list(STYLE_COLOURS)}")
    return STYLE_COLOURS[style]


def shade(style: str, index: int, count: int) -> tuple[float, float, float]:
    """The `index`-th of `count` shades of `style`'s colour, light to full (e.g. one per k): RGB in [0, 1]."""
    if not 0 <= index < count:
        raise ValueError(f"shade index must be in [0, {count}), got {index}")
    colour = style_colour(style)
    rgb = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    white = 0.55 * (count - 1 - index) / (count - 1) if count > 1 else 0.0
    return tuple(c + (1 - c) * white for c in rgb)
