"""The report's sentences on how the figures were made, from the run's own metadata; HTML pages and docs share them."""

from __future__ import annotations

COUNTING = ("Counting as vLLM counts: proposed = the draft tokens scheduled for verification in every step; "
            "accepted = those the target's verification accepted, counted before the stop check, so a step that "
            "accepts eos keeps its whole accepted run although the output stops at eos; acceptance rate = accepted / "
            "proposed pooled over a seed's problems; mean acceptance length = 1 + accepted / steps.")
SEED_VARIATION = ("Between seeds the training varies: the target's LoRA initialisation and data order, the "
                  "distillation's sampling of the target's answers, and the draft's LoRA initialisation and data "
                  "order; the prepared data, the test problems and the base models are the same for every seed.")
PAIRING = ("CoT and CoD answer the same test problems: a CoD - CoT difference pairs the rows of one (seed, "
           "problem id), seed s of CoT with seed s of CoD. Its 95% interval is a two-level bootstrap: each "
           "resample draws the seeds with replacement, then, within each drawn seed, its problem ids with "
           "replacement, the same draws for both styles; the estimate is the mean over seeds of each seed's "
           "difference. p-value: two-sided, from that bootstrap distribution, 2 min(P(d <= 0), P(d >= 0)) with "
           "the +1 correction; a throughput ratio of a batched run (one per seed) is tested by an exact "
           "sign-flip test over the seeds instead, and has no interval. With few seeds the seed level "
           "understates the between-seed variance (the bootstrap's plug-in variance, a factor (S - 1) / S).")


def _values(conditions: dict, key: str, unknown: str = "not recorded") -> str:
    values = conditions.get(key)
    if not values:
        return unknown
    return ", ".join(" / ".join(map(str, v)) if isinstance(v, tuple) else str(v) for v in values)


def dtype_name(value) -> str:
    return str(value).removeprefix("torch.")


def conditions_text(conditions: dict) -> str:
    """'concurrency 1, k 2 / 4, weights ..., dtype ..., device ...': each as the run's metadata records it."""
    return (f"concurrency {_values(conditions, 'concurrency')}, k {_values(conditions, 'num_speculative_tokens')}, "
            f"engine {_values(conditions, 'engine')}, weights {_values(conditions, 'engine_weights')}, "
            f"dtype {', '.join(dtype_name(v) for v in conditions.get('dtype', [])) or 'not recorded'}, "
            f"device {_values(conditions, 'device_name')}, max_new_tokens {_values(conditions, 'max_new_tokens')}, "
            f"temperature {_values(conditions, 'temperature')}")


def reduced_precision(conditions: dict) -> bool:
    """Whether any run served weights that are not float32: quantized formats or a bf16/fp16 dtype."""
    quantized = any(str(w) in ("int8", "int4") for w in conditions.get("engine_weights", []))
    return quantized or any(dtype_name(d) != "float32" for d in conditions.get("dtype", []))


def weights_note(conditions: dict) -> str:
    """Why the matching-row speedup is shown, when the weights were not float32; empty otherwise."""
    if not reduced_precision(conditions):
        return ""
    return ("The weights were not float32 (weights " + _values(conditions, "engine_weights") + ", dtype "
            + ", ".join(dtype_name(v) for v in conditions.get("dtype", [])) + "): a near-tie between two tokens "
            "can round differently in a (k + 1)-token verification than in a one-token step, so speculative output "
            "is not always the target-alone output token for token (matches_target < 1); the pooled speedup then "
            "compares different texts, the matching-row speedup compares like with like.")


def speedup_text(concurrency: int) -> str:
    if concurrency > 1:
        return (f"Speedup: the batched run's throughput ratio ({concurrency} requests at a time, speculative "
                "tokens per second over the target alone's on the same problems), one per seed, from "
                "benchmark_run.json.")
    return ("Speedup: speculative tokens per second / the target alone's, pooled over the problems, one request "
            "at a time, measured side by side in one process.")


def design_text(num_seeds: int, repeats: int, conditions: dict, concurrency: int) -> str:
    """Seeds, repeats, conditions and the speedup's definition in one paragraph."""
    return (f"{num_seeds} seed(s) per experiment; each timing is the median of {repeats} repeat(s) per problem. "
            f"Conditions (from the run's metadata): {conditions_text(conditions)}. {speedup_text(concurrency)} "
            f"{SEED_VARIATION}")


def primary_text(comparison, configured_k: int | None = None) -> str:
    """The primary comparison's verdict, scenario by scenario; says so when the configured k was not run."""
    primary = comparison[comparison.label == "primary"] if len(comparison) else comparison
    if not len(primary):
        return "No primary comparison: no scenario has both a CoT and a CoD experiment at the primary k."
    first = primary.iloc[0]
    fallback = ("" if configured_k in (None, first.k)
                else f" (summary.primary.k = {configured_k} was not benchmarked: the nearest k run)")
    verdicts = "; ".join(
        f"{r.scenario}: {r.difference:+.3g} (Holm-adjusted p = {r.p_holm:.3g}, "
        f"{'beyond' if r.beyond_noise else 'within'} the noise)" for r in primary.itertuples())
    return (f"Primary comparison (named in config before the run): CoD - CoT {first.statistic.replace('_', ' ')} "
            f"at k = {first.k}{fallback}, one test per scenario, Holm-corrected over {len(primary)}: {verdicts}. "
            "Every other row is exploratory (Holm-corrected within the exploratory family).")
