"""Speculative decoding: the loops (batch 1 and batched), verification, counts, sessions, batching, cost model."""
