"""Speculative decoding: the loop, verification, decoding sessions, batching and the cost model."""
