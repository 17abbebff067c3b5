"""The published project's table (its README), shown beside ours; PUBLISHED_CONDITIONS says how it was run."""

PUBLISHED = [
    # scenario, style, acceptance_rate, speedup, tokens_per_answer
    ("easy", "cot", 0.827, 1.41, 114), ("medium", "cot", 0.850, 1.50, 226), ("hard", "cot", 0.834, 1.55, 311),
    ("easy", "cod", 0.882, 1.53, 96), ("medium", "cod", 0.890, 1.56, 165), ("hard", "cod", 0.880, 1.64, 304),
]
PUBLISHED_CONDITIONS = "Qwen3-14B target, Qwen3-0.6B draft, one A40, vLLM, k = 5, greedy, 16 concurrent requests"
PUBLISHED_K = 5
