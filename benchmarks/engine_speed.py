"""Engine speed, side by side in one process: Hugging Face `generate` and assisted generation against the
native engine (target alone, speculative k = 3, 5, 8, batch-64 generation), and the memory-bandwidth bound.

    python benchmarks/engine_speed.py --shape seed    # the seed's 14B / 0.5B shapes, random weights, GPU
    python benchmarks/engine_speed.py --shape tiny    # small shapes: runs anywhere, a CPU included

Models are random-weight Qwen2 models of the given shapes (the draft's vocabulary padded to the target's).
Both final norms are zeroed so that every logit is 0: every draft token is accepted, the best case, which
measures the engine rather than the draft. Writes a JSON of every figure to --out and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

SHAPES = {
    # Qwen2.5-14B-Instruct and Qwen2.5-0.5B-Instruct (the draft padded to the target's 152,064 rows).
    "seed": {
        "target": dict(hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
                       intermediate_size=13824, vocab_size=152064, tie_word_embeddings=False),
        "draft": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                      intermediate_size=4864, vocab_size=152064, tie_word_embeddings=True),
    },
    "tiny": {
        "target": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                       intermediate_size=512, vocab_size=4096, tie_word_embeddings=False),
        "draft": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                      intermediate_size=128, vocab_size=4096, tie_word_embeddings=True),
    },
}


def build(shape: dict, dtype: torch.dtype, device: torch.device, seed: int):
    from transformers import AutoModelForCausalLM, Qwen2Config

    torch.manual_seed(seed)
    config = Qwen2Config(max_position_embeddings=4096, **shape)
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


def copy_bandwidth(device: torch.device, num_bytes: int) -> float:
    """Bytes per second of a device-to-device copy, counting bytes read plus bytes written."""
    src = torch.empty(num_bytes // 2, dtype=torch.bfloat16, device=device).uniform_()
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=10)
    return 2 * num_bytes / seconds


def identical_outputs(engine_target, engine_draft, device: torch.device, prompt_len: int, prompts: int = 8,
                      new_tokens: int = 64) -> str:
    """How many greedy speculative outputs (k = 5) equal the engine's own target-only greedy output."""
    from specdraft.decoding import autoregressive_generate, speculative_generate

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
    fp32 = identical_outputs(Engine.from_hf(fp32_target, max_seq_len=512), Engine.from_hf(fp32_draft, max_seq_len=512),
                             device, args.prompt_len, new_tokens=new_tokens)
    return {"identical_outputs_bf16": bf16, "identical_outputs_fp32": fp32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--hf-batch", type=int, default=32, help="batch size of the Hugging Face comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="compile the engine's layer step (torch.compile)")
    parser.add_argument("--skip-hf", action="store_true", help="leave out the slow Hugging Face baselines")
    parser.add_argument("--out", default="engine_speed.json")
    args = parser.parse_args()

    from specdraft.decoding import autoregressive_generate, speculative_generate
    from specdraft.engine import Engine

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    n = args.new_tokens
    results = {"shape": args.shape, "compile": args.compile, "device": str(device), "dtype": str(dtype),
               "prompt_len": args.prompt_len,
               "new_tokens": n, "torch": torch.__version__}
    if device.type == "cuda":
        results["gpu"] = torch.cuda.get_device_name(device)
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
    start = time.perf_counter()
    engine_target = Engine.from_hf(target, max_seq_len=args.prompt_len + n + 16, max_batch_size=args.batch,
                                   compile_layers=args.compile)
    autoregressive_generate(engine_target, prompt, max_new_tokens=n)
    sync(device)
    first = time.perf_counter() - start
    steady = timed(lambda: autoregressive_generate(engine_target, prompt, max_new_tokens=n), device, args.repeats)
    results["native_target_tok_s"] = rate(steady)
    results["native_target_fraction_of_bound"] = results["native_target_tok_s"] / results["bandwidth_bound_tok_s"]
    results["startup_target_s"] = max(0.0, first - steady)  # below zero is timing noise (no capture on a CPU)

    sync(device)
    start = time.perf_counter()
    engine_draft = Engine.from_hf(draft, max_seq_len=args.prompt_len + n + 16, max_batch_size=1,
                                  compile_layers=args.compile)
    out = speculative_generate(engine_target, engine_draft, prompt, num_speculative_tokens=5, max_new_tokens=n)
    sync(device)
    first = time.perf_counter() - start
    assert out.stats.acceptance_rate == 1.0, "zeroed final norms should make every proposal accepted"
    for k in (3, 5, 8):
        results[f"native_speculative_k{k}_tok_s"] = rate(timed(lambda: speculative_generate(
            engine_target, engine_draft, prompt, num_speculative_tokens=k, max_new_tokens=n), device, args.repeats))
    # The target's one-token shapes were ready already; the speculative start-up adds the draft's and the
    # verification's, on top of the target's.
    results["startup_speculative_s"] = results["startup_target_s"] + max(
        0.0, first - n / results["native_speculative_k5_tok_s"])
    prompts = batch_prompts.tolist()
    results[f"native_batch{args.batch}_tok_s"] = rate(timed(
        lambda: engine_target.generate_batch(prompts, max_new_tokens=n), device, args.repeats), n * args.batch)
    runners = (engine_target._session_runner, engine_target._batch_runner)
    results["native_graphs_captured"] = sum(r.num_graphs for r in runners)
    if device.type == "cuda":
        results["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 1024**3

    results.update(exactness(engine_target, engine_draft, device, args))

    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    width = max(len(k) for k in results)
    for key, value in results.items():
        print(f"{key:<{width}}  {value:,.3f}" if isinstance(value, float) else f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
