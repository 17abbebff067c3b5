"""Speculative decoding: the loops (batch 1 and batched), verification, the counts, decoding sessions, batching
helpers and the cost model."""
