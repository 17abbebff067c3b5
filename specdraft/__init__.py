"""specdraft: how the reasoning style a model is trained to write changes what speculative decoding buys."""

__version__ = "0.1.0"
