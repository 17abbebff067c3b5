"""Engine speed, side by side in one process: Hugging Face `generate` and assisted generation against the
native engine (target alone, speculative k = 3, 5, 8, batch-64 generation), and the memory-bandwidth bound.

    python benchmarks/engine_speed.py --shape seed    # the seed's 14B / 0.5B shapes, random weights, GPU
    python benchmarks/engine_speed.py --shape tiny    # small shapes: runs anywhere, a CPU included
    python benchmarks/engine_speed.py --shape qwen3 --concurrency 16   # Qwen3-14B / 0.6B, 16 in flight
    python benchmarks/engine_speed.py --shape seed --weights int8 --skip-hf   # weight-only int8 engines
    python benchmarks/engine_speed.py --shape seed --weights int4 --skip-hf   # weight-only int4 engines

With --concurrency B, only the batched comparison runs: --problems prompts (default 2 B, so that finished
rows are refilled once) decoded B at a time by the target alone and speculatively (each --ks value), with
the same scheduler (`autoregressive_generate_batch`, `speculative_generate_batch`), tokens/s of each and
their ratio, plus the exactness of batched greedy rows against batch-1 output.

With --acceptance 0.6,0.7,..., verification accepts each draft token with that probability instead
(`acceptance_curve.py`: seeded, benchmark-only): batch 1 stops after the step parts with the curve at
k = 5; --concurrency adds it for each --ks value. Measured tokens/s and speedup sit next to the Leviathan
prediction from the same run's c and verification cost, under "acceptance_curve" in the JSON.

Models are random-weight Qwen2 models of the given shapes (the draft's vocabulary padded to the target's).
Both final norms are zeroed so that every logit is 0: every draft token is accepted, the best case, which
measures the engine rather than the draft. Writes a JSON of every figure to --out and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

START = time.perf_counter()

SHAPES = {
    # Qwen2.5-14B-Instruct and Qwen2.5-0.5B-Instruct (the draft padded to the target's 152,064 rows).
    "seed": {
        "target": dict(hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
                       intermediate_size=13824, vocab_size=152064, tie_word_embeddings=False),
        "draft": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      intermediate_size=4864, vocab_size=152064, tie_word_embeddings=True),
    },
    # Qwen3-14B and Qwen3-0.6B: 151,936 rows each, head_dim 128, per-head q/k RMSNorm.
    "qwen3": {
        "target": dict(hidden_size=5120, num_hidden_layers=40, num_attention_heads=40, num_key_value_heads=8,
                       head_dim=128, intermediate_size=17408, vocab_size=151936, tie_word_embeddings=False),
        "draft": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8,
                      head_dim=128, intermediate_size=3072, vocab_size=151936, tie_word_embeddings=True),
    },
    "tiny": {
        "target": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                       intermediate_size=512, vocab_size=4096, tie_word_embeddings=False),
        "draft": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=4096, tie_word_embeddings=True),
    },
}


def build(shape: dict, dtype: torch.dtype, device: torch.device, seed: int):
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

    torch.manual_seed(seed)
    config = (Qwen3Config if "head_dim" in shape else Qwen2Config)(max_position_embeddings=4096, **shape)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    with torch.no_grad():
        model.model.norm.weight.zero_()  # every logit 0: greedy picks token 0, every proposal is accepted
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model.eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int) -> float:
    """Median seconds of `repeats` runs of `fn`, after one untimed warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_call_ms(fn, device: torch.device, repeats: int, calls: int = 20) -> float:
    """Milliseconds per call of `fn` over `calls` back-to-back calls between two synchronisations (`timed`)."""
    return 1000 * timed(lambda: [fn() for _ in range(calls)], device, repeats) / calls


def copy_bandwidth(device: torch.device, num_bytes: int) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus bytes written."""
    src = torch.empty(num_bytes // 2, dtype=torch.bfloat16, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=10)
    return 2 * num_bytes / seconds


def engine_bytes_per_step(engine) -> int:
    """Bytes of weights a one-token step reads: every matrix and norm, but one row of the embedding table."""
    return sum(t.numel() * t.element_size() for name, t in [*engine.decoder.named_parameters(),
                                                           *engine.decoder.named_buffers()]
               if not name.startswith("embed") and name != "inv_freq")


def session_calls(engine, prompt_len: int) -> dict:
    """The calls a batch-1 speculative step is made of, on a session of `engine` that holds a prompt of
    `prompt_len` tokens, each rolled back to it first: a one-token step, a 6-token verification, and a
    5-token greedy proposal (one graph fed one new token and the one before it, as in `speculative_generate`)."""
    session = engine.open_session(prompt_len + 16)
    session.forward(list(range(1, prompt_len + 1)), 1)

    def step(num_tokens: int):
        def call():
            session.rollback(prompt_len)
            session.forward([0] * num_tokens, num_tokens)
        return call

    def proposal():
        session.rollback(prompt_len)
        session.propose_greedy([0], 5)

    return {"one_token_step": step(1), "verification_6": step(6), "proposal_5": proposal}


def step_parts(engine_target, engine_draft, device: torch.device, prompt_len: int, bandwidth: float,
               repeats: int, calls: int = 20) -> dict:
    """Milliseconds of one call of each part of a batch-1 speculative step (graph replays, mid-generation,
    `calls` back to back between two synchronisations): the target's one-token step, its 6-token
    verification, and one draft token inside a 5-token proposal (one graph fed one new token and the one
    before it, as in `speculative_generate`); each against its bytes floor (weights read once at `bandwidth`).
    Then each engine's prefill of a `prompt_len`-token prompt (its graph's replay, as a generation starts)."""
    target, draft = session_calls(engine_target, prompt_len), session_calls(engine_draft, prompt_len)
    parts = {"target_step_ms": per_call_ms(target["one_token_step"], device, repeats, calls),
             "verification_6_ms": per_call_ms(target["verification_6"], device, repeats, calls),
             "draft_token_ms": per_call_ms(draft["proposal_5"], device, repeats, calls) / 5}
    floors = {"target_step_ms": engine_bytes_per_step(engine_target) / bandwidth * 1000,
              "draft_token_ms": engine_bytes_per_step(engine_draft) / bandwidth * 1000}
    floors["verification_6_ms"] = floors["target_step_ms"]
    for key, floor in floors.items():
        parts[f"{key.removesuffix('_ms')}_floor_ms"] = floor
        parts[f"{key.removesuffix('_ms')}_fraction_of_floor"] = floor / parts[key]
    parts["draft_to_target_cost_ratio"] = parts["draft_token_ms"] / parts["target_step_ms"]
    ids = torch.randint(1, 1000, (prompt_len,), device=device)
    for role, engine in (("target", engine_target), ("draft", engine_draft)):  # as a generation starts
        parts[f"{role}_prefill_ms"] = 1000 * timed(lambda: engine.open_session(prompt_len + 1).forward(ids, 1), device,
                                                   repeats)
    return parts


def identical_outputs(engine_target, engine_draft, device: torch.device, prompt_len: int, prompts: int = 8,
                      new_tokens: int = 64) -> str:
    """How many greedy speculative outputs (k = 5) equal the engine's own target-only greedy output."""
    from specdraft.decoding.speculative import autoregressive_generate, speculative_generate

    identical = 0
    for i in range(prompts):
        g = torch.Generator(device=device).manual_seed(100 + i)
        prompt = torch.randint(1, 1000, (1, prompt_len), device=device, generator=g)
        reference = autoregressive_generate(engine_target, prompt, max_new_tokens=new_tokens)
        out = speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=5,
                                   max_new_tokens=new_tokens)
        identical += torch.equal(out.token_ids, reference)
    return f"{identical}/{prompts}"


def exactness(engine_target, engine_draft, device: torch.device, args) -> dict:
    """Greedy speculative output against target-only output with real (non-zero) logits.

    bf16, the benchmark's models with the target's final norm restored (the draft, still zeroed, proposes
    token 0 and is mostly rejected, so every step rolls back); and float32, two random models of the draft's
    shape, where rounding differences between the one-token and the (k+1)-token kernels cannot flip an argmax.
    """
    from specdraft.engine import Engine

    with torch.no_grad():
        engine_target.decoder.norm.fill_(1.0)
    new_tokens = min(64, args.new_tokens)  # within the engines' max_seq_len
    bf16 = identical_outputs(engine_target, engine_draft, device, args.prompt_len, new_tokens=new_tokens)
    with torch.no_grad():
        engine_target.decoder.norm.zero_()
    small = SHAPES[args.shape]["draft"]
    fp32_target, fp32_draft = (build(small, torch.float32, device, seed) for seed in (2, 3))
    with torch.no_grad():
        fp32_target.model.norm.weight.fill_(1.0)
        fp32_draft.model.norm.weight.fill_(1.0)
    fp32_engines = [Engine.from_hf(m, max_seq_len=512, weights=args.weights) for m in (fp32_target, fp32_draft)]
    fp32 = identical_outputs(*fp32_engines, device, args.prompt_len, new_tokens=new_tokens)
    return {"identical_outputs_bf16": bf16, "identical_outputs_fp32": fp32}


def concurrency_mode(args, device: torch.device, dtype: torch.dtype, results: dict) -> None:
    """Target alone against speculative decoding, both `args.concurrency` problems at a time."""
    from specdraft.decoding.batched import autoregressive_generate_batch, speculative_generate_batch
    from specdraft.decoding.speculative import autoregressive_generate
    from specdraft.engine import Engine

    B, n, ks = args.concurrency, args.new_tokens, [int(k) for k in args.ks.split(",")]
    num_problems = args.problems or 2 * B
    results.update(concurrency=B, num_problems=num_problems, ks=ks)
    target = build(SHAPES[args.shape]["target"], dtype, device, seed=0)
    draft = build(SHAPES[args.shape]["draft"], dtype, device, seed=1)
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(1, 1000, (num_problems, args.prompt_len), generator=g).tolist()
    max_seq_len = args.prompt_len + n + max(ks) + 2
    engines = [Engine.from_hf(m, max_seq_len=max_seq_len, max_batch_size=B, compile_layers=args.compile,
                              weights=args.weights, dependent_launch_steps=launch_steps(args)) for m in (target, draft)]
    del target, draft
    if device.type == "cuda":
        torch.cuda.empty_cache()

    def plain():
        return autoregressive_generate_batch(engines[0], prompts, max_new_tokens=n, concurrency=B)

    def speculative(k):
        return lambda: speculative_generate_batch(*engines, prompts, num_speculative_tokens=k, max_new_tokens=n,
                                                  concurrency=B)

    sync(device)
    start = time.perf_counter()
    outputs = plain()  # the first run captures every graph it needs
    sync(device)
    first = time.perf_counter() - start
    seconds = timed(plain, device, args.repeats)
    results["startup_target_s"] = max(0.0, first - seconds)
    total = sum(len(o.token_ids) for o in outputs)
    results[f"target_concurrency{B}_tok_s"] = total / seconds
    results["target_ttft_mean_s"] = statistics.fmean(o.timing.first_token_s - o.timing.admitted_s for o in outputs)
    write_results(results, args.out, quiet=True)  # kept if a later part is cut off
    # The same B rows as one static batch (`generate_batch`: a host synchronisation every 16 steps, no
    # refill): what the scheduler's per-step synchronisation and refills cost the target alone.
    static = prompts[:B]
    results[f"target_static_batch{B}_tok_s"] = B * n / timed(
        lambda: engines[0].generate_batch(static, max_new_tokens=n), device, args.repeats)
    for k in ks:
        outputs = speculative(k)()
        assert all(o.stats.acceptance_rate == 1.0 for o in outputs), "zeroed final norms: every proposal accepted"
        seconds = timed(speculative(k), device, args.repeats)
        results[f"speculative_k{k}_concurrency{B}_tok_s"] = sum(len(o.token_ids) for o in outputs) / seconds
        results[f"speculative_k{k}_speedup"] = results[f"speculative_k{k}_concurrency{B}_tok_s"] / results[
            f"target_concurrency{B}_tok_s"]
        results[f"speculative_k{k}_ttft_mean_s"] = statistics.fmean(
            o.timing.first_token_s - o.timing.admitted_s for o in outputs)
        write_results(results, args.out, quiet=True)
    # What one step costs, call by call (graph replays of shapes captured above), mid-generation: the
    # speculative step is a proposal plus a verification, the target-alone step one B x 1 forward.
    target_rows, draft_rows = engines[0].open_rows(B), engines[1].open_rows(B, offset=1)
    positions = [args.prompt_len + n // 2] * B

    def zeros(*size):
        return torch.zeros(*size, dtype=torch.long, device=device)

    results["target_step_ms"] = per_call_ms(lambda: target_rows.forward(zeros(B, 1), positions), device, args.repeats)
    for k in ks:
        results[f"verification_k{k}_ms"] = per_call_ms(lambda: target_rows.forward(zeros(B, k + 1), positions),
                                                        device, args.repeats)
        results[f"proposal_k{k}_ms"] = per_call_ms(lambda: draft_rows.propose(
            zeros(B, 2), positions, torch.zeros(B, k, device=device), 0.0, 1.0), device, args.repeats)
        # Every proposal accepted: k + 1 tokens a row per proposal + verification, against 1 per target step.
        results[f"speculative_k{k}_speedup_from_parts"] = (k + 1) * results["target_step_ms"] / (
            results[f"verification_k{k}_ms"] + results[f"proposal_k{k}_ms"])
    if args.acceptance:
        from acceptance_curve import concurrency_curve, parse_rates

        results["acceptance_curve"] = {f"concurrency{B}": concurrency_curve(
            engines, prompts, parse_rates(args.acceptance), ks, n, B, lambda fn: timed(fn, device, args.repeats),
            results)}
    results["native_graphs_captured"] = sum(e.num_graphs for e in engines)
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 1024**3

    # Exactness: batched greedy rows against batch-1 greedy output, in float32 (two random models of the
    # draft's shape with real logits and untied heads, so that they disagree and most steps roll back).
    small = dict(SHAPES[args.shape]["draft"], tie_word_embeddings=False)
    fp32 = [build(small, torch.float32, device, seed) for seed in (2, 3)]
    with torch.no_grad():
        for m in fp32:
            m.model.norm.weight.fill_(1.0)
    fp32 = [Engine.from_hf(m, max_seq_len=args.prompt_len + 80, max_batch_size=B) for m in fp32]
    check = [p[: args.prompt_len - i] for i, p in enumerate(prompts[:B])]  # rows of different lengths
    reference = [autoregressive_generate(fp32[0], torch.tensor([p], device=device), max_new_tokens=64).tolist()
                 for p in check]
    batched = speculative_generate_batch(*fp32, check, num_speculative_tokens=5, max_new_tokens=64, concurrency=B)
    results["batched_rows_identical_to_batch1_fp32"] = (
        f"{sum(o.token_ids.tolist() == r for o, r in zip(batched, reference))}/{len(check)}")
    results["batched_fp32_acceptance_rate"] = (sum(o.stats.num_accepted for o in batched)
                                               / sum(o.stats.num_proposed for o in batched))


def launch_steps(args) -> frozenset[str]:
    """The kinds of step whose graphs are offered dependent launches (`--offer-pdl`)."""
    from specdraft.engine.runner import DEPENDENT_LAUNCH_STEPS, STEP_KINDS

    return STEP_KINDS if args.offer_pdl == "all" else DEPENDENT_LAUNCH_STEPS


def main() -> None:
    from specdraft.plumbing.names import MODEL_DTYPE, WEIGHT_FORMATS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hf-batch", type=int, default=32, help="batch size of the Hugging Face comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="compile the engine's layer step (torch.compile)")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the slow Hugging Face baselines")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="run only the batched comparison, this many problems in flight")
    parser.add_argument("--problems", type=int, default=0, help="problems of the batched comparison (0: 2 B)")
    parser.add_argument("--ks", default="5", help="k values of the batched comparison, comma-separated")
    parser.add_argument("--weights", choices=WEIGHT_FORMATS, default=MODEL_DTYPE,
                        help="the engines' weights (`engine_weights`): the model's dtype, or weight-only int8 or int4")
    parser.add_argument("--skip-batch", action="store_true", help="leave out batch-64 generation")
    parser.add_argument("--compare-bf16", action="store_true",
                        help="with --weights int8 or int4: also time unquantized (model_dtype, here bf16) engines of the same models in this process")
    parser.add_argument("--compare-no-pdl", action="store_true",
                        help="also time the engines with programmatic dependent launch off, in this process")
    parser.add_argument("--offer-pdl", choices=["proposals", "all"], default="proposals",
                        help="the graphs captured both with and without dependent launches, the faster kept: the "
                             "draft's proposals (as served), or every graph (the target's steps too)")
    parser.add_argument("--acceptance", default="",
                        help="comma-separated acceptance rates: speed with each draft token accepted at that rate")
    parser.add_argument("--out", default="engine_speed.json")
    args = parser.parse_args()

    from specdraft.decoding.speculative import autoregressive_generate, speculative_generate
    from specdraft.engine import Engine
    from specdraft.engine import tuner as tuning
    from specdraft.engine.launch import pdl_supported

    tuning_seconds = tuning.current().tuning_seconds

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = args.new_tokens
    results = {"shape": args.shape, "compile": args.compile, "weights": args.weights, "offer_pdl": args.offer_pdl,
               "device": str(device),
               "dtype": str(dtype),
               "prompt_len": args.prompt_len,
               "new_tokens": n, "torch": torch.__version__}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
    results["command"] = "python " + " ".join(sys.argv)
    if args.concurrency:
        concurrency_mode(args, device, dtype, results)
        write_results(results, args.out)
        return
    target = build(SHAPES[args.shape]["target"], dtype, device, seed=0)
    draft = build(SHAPES[args.shape]["draft"], dtype, device, seed=1)
    prompt = torch.randint(1, 1000, (1, args.prompt_len), device=device)
    batch_prompts = torch.randint(1, 1000, (args.batch, args.prompt_len), device=device)

    weight_bytes = sum(p.numel() * p.element_size() for name, p in target.named_parameters()
                       if "embed_tokens" not in name)  # a decode step reads all but the embedding table
    bandwidth = copy_bandwidth(device, 2 * 1024**3 if device.type == "cuda" else 256 * 1024**2)
    results.update(target_weight_bytes_per_step=weight_bytes, copy_bandwidth_bytes_per_s=bandwidth,
                   bandwidth_bound_tok_s=bandwidth / weight_bytes)

    def rate(seconds: float, tokens: int = n) -> float:
        return tokens / seconds

    hf_kwargs = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, top_p=None, top_k=None, temperature=None)
    if not args.skip_hf:
        with torch.inference_mode():
            results["hf_target_tok_s"] = rate(timed(lambda: target.generate(prompt, **hf_kwargs), device, 1))
            draft.generation_config.num_assistant_tokens = 5
            draft.generation_config.num_assistant_tokens_schedule = "constant"
            draft.generation_config.assistant_confidence_threshold = 0.0
            results["hf_assisted_k5_tok_s"] = rate(timed(
                lambda: target.generate(prompt, assistant_model=draft, **hf_kwargs), device, 1))
            hf_batch = batch_prompts[: args.hf_batch]
            results[f"hf_batch{args.hf_batch}_tok_s"] = rate(timed(
                lambda: target.generate(hf_batch, attention_mask=torch.ones_like(hf_batch), **hf_kwargs),
                device, 1), n * len(hf_batch))

    # Start-up: from weights on the device to generating at full speed, graph capture (and compilation)
    # included: the first full generation's time, less a steady-state generation's.
    sync(device)
    tuning_before = tuning_seconds()
    start = time.perf_counter()
    engine_target = Engine.from_hf(target, max_seq_len=args.prompt_len + n + 16, max_batch_size=args.batch,
                                   compile_layers=args.compile, weights=args.weights,
                                   dependent_launch_steps=launch_steps(args))
    sync(device)
    results["startup_target_build_s"] = time.perf_counter() - start  # the engine's own weights (quantized)
    autoregressive_generate(engine_target, prompt, max_new_tokens=n)
    sync(device)
    first = time.perf_counter() - start
    results["startup_target_tuning_s"] = tuning_seconds() - tuning_before  # compiling and timing candidates
    steady = timed(lambda: autoregressive_generate(engine_target, prompt, max_new_tokens=n), device, args.repeats)
    results["native_target_tok_s"] = rate(steady)
    results["native_target_fraction_of_bound"] = results["native_target_tok_s"] / results["bandwidth_bound_tok_s"]
    results["engine_weight_bytes_per_step"] = engine_bytes_per_step(engine_target)  # int8: about half
    results["engine_bound_tok_s"] = bandwidth / results["engine_weight_bytes_per_step"]
    results["native_target_fraction_of_engine_bound"] = results["native_target_tok_s"] / results["engine_bound_tok_s"]
    results["startup_target_s"] = max(0.0, first - steady)  # below zero is timing noise (no capture on a CPU)
    write_results(results, args.out, quiet=True)

    sync(device)
    tuning_before = tuning_seconds()
    start = time.perf_counter()
    engine_draft = Engine.from_hf(draft, max_seq_len=args.prompt_len + n + 16, max_batch_size=1,
                                  compile_layers=args.compile, weights=args.weights,
                                  dependent_launch_steps=launch_steps(args))
    out = speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=5, max_new_tokens=n)
    sync(device)
    first = time.perf_counter() - start
    results["startup_speculative_tuning_s"] = tuning_seconds() - tuning_before
    assert out.stats.acceptance_rate == 1.0, "zeroed final norms should make every proposal accepted"
    for k in (3, 5, 8):
        results[f"native_speculative_k{k}_tok_s"] = rate(timed(lambda: speculative_generate(
            engine_target, engine_draft, prompt, num_speculative_tokens=k, max_new_tokens=n), device, args.repeats))
    # The target's one-token shapes were ready already; the speculative start-up adds the draft's and the
    # verification's, on top of the target's.
    results["startup_speculative_s"] = results["startup_target_s"] + max(
        0.0, first - n / results["native_speculative_k5_tok_s"])
    write_results(results, args.out, quiet=True)
    parts = step_parts(engine_target, engine_draft, device, args.prompt_len, bandwidth, args.repeats)
    results.update(parts)
    write_results(results, args.out, quiet=True)
    if args.acceptance:
        from acceptance_curve import batch1_curve, parse_rates

        results["acceptance_curve"] = {"batch1": batch1_curve(
            engine_target, engine_draft, prompt, parse_rates(args.acceptance), n,
            lambda fn: timed(fn, device, args.repeats), parts, results["native_target_tok_s"])}
        write_results(results, args.out)
        return
    def side_by_side(prefix: str, weights: str) -> None:
        """Another target and draft engine pair of the same models, in this process: its target alone,
        speculative k = 5 and step parts, as `prefix`_..."""
        pair = [Engine.from_hf(m, max_seq_len=args.prompt_len + n + 16, max_batch_size=1, weights=weights,
                               dependent_launch_steps=launch_steps(args)) for m in (target, draft)]
        results[f"{prefix}_native_target_tok_s"] = rate(timed(
            lambda: autoregressive_generate(pair[0], prompt, max_new_tokens=n), device, args.repeats))
        results[f"{prefix}_native_speculative_k5_tok_s"] = rate(timed(lambda: speculative_generate(
            *pair, prompt, num_speculative_tokens=5, max_new_tokens=n), device, args.repeats))
        parts = step_parts(*pair, device, args.prompt_len, bandwidth, args.repeats)
        results.update({f"{prefix}_{key}": value for key, value in parts.items()})
        write_results(results, args.out, quiet=True)

    if args.compare_bf16 and args.weights != "model_dtype":
        side_by_side("bf16", "model_dtype")  # the same models served in bf16: the baseline
    if args.compare_no_pdl and device.type == "cuda" and pdl_supported():
        # No graph offered dependent launches (each kernel waits for the one before it to end): what
        # programmatic dependent launch buys. Tuned choices are kept.
        launch = tuning.current().launch
        launch.allow_dependent = False
        try:
            side_by_side("no_pdl", args.weights)
        finally:
            launch.allow_dependent = True
    if device.type == "cuda":
        # The pair as served: the Hugging Face models dropped, then the peak of a speculative generation
        # (weights, caches, graphs' memory) and the memory the engines hold.
        del target, draft
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=8, max_new_tokens=n)
        results["pair_engines_allocated_gib"] = torch.cuda.memory_allocated(device) / 1024**3
        results["pair_peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 1024**3
    if not args.skip_batch:
        prompts = batch_prompts.tolist()
        results[f"native_batch{args.batch}_tok_s"] = rate(timed(
            lambda: engine_target.generate_batch(prompts, max_new_tokens=n), device, args.repeats), n * args.batch)
    results["native_graphs_captured"] = engine_target.num_graphs
    for role, engine in (("target", engine_target), ("draft", engine_draft)):  # dependent launches or plain
        results[f"{role}_graph_launches"] = engine.session_runner().launch_choices()
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 1024**3

    write_results(results, args.out, quiet=True)
    results.update(exactness(engine_target, engine_draft, device, args))
    write_results(results, args.out)


def write_results(results: dict, path: str, quiet: bool = False) -> None:
    """Write results as JSON (after each section too, so that a run cut short keeps what it measured)."""
    if "torch" in sys.modules and torch.cuda.is_available():
        from specdraft.engine import tuner as tuning
        from specdraft.engine.launch import available, pdl_supported

        tuner = tuning.current()
        results["triton_kernels"] = available()
        results["programmatic_dependent_launch_supported"] = pdl_supported()
        results["triton_failures"] = {str(k): v for k, v in tuner.failures.items()}
        results["triton_tuned"] = {str(k): None if c is None else c._asdict() for k, c in tuner.tuned_configs().items()}
    with open(path, "w") as f:
        json.dump(results, f, indent=1, default=str)
    if quiet:
        print(f"[{time.perf_counter() - START:.0f} s] {list(results)[-1]}: {results[list(results)[-1]]}", flush=True)
        return
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:,.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
