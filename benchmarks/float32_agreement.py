"""How far the engine's fast paths are from the model they stand for, in float32, part by part.

    python benchmarks/float32_agreement.py --out float32_agreement.json

For each engine weight format (model_dtype = the model's own float32 weights here, int8, int4), a tiny float32
Qwen2 whose matrices take multiples of 128 inputs (so int4 applies) is compared with the Hugging Face
model over the same (dequantized) weights: the engine's logits at every position of a 20-token prefill
and `--steps` one-token steps (fed the reference's greedy tokens, so both see the same prefix) against the
reference's logits for that prefix. The engine's cache holds `--max-seq-len` columns (512, as
tests/test_engine_cuda.py's engines: attention then runs over 256 or 512 of them). Four engines per format, each built afresh (graphs are captured with
the kernels of their time):

- `torch`: every step on torch's path (no kernel family in `LaunchOptions.families`);
- `linear`: the Triton matmul kernel only;
- `rope_attention`: the Triton RoPE + cache-write and attention kernels only;
- `all`: every Triton kernel, as decoding runs.

Per engine and prompt (one drawn on the host, and tests/test_engine_cuda.py's, drawn on the GPU): the
largest |logit difference|, the first position where it exceeds 1e-5, the difference of the first
generated token's logits when the prefill returns only the last position's (as plain decoding runs it:
the lm-head on one row), and the positions whose argmax differs from the reference's with the
reference's top-2 gap (a disagreement where the gap is above ~1e-5 is not float32 rounding).
Needs a CUDA device (on a CPU every variant is the torch path).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

# The kernel families (`LaunchOptions.families`) each variant runs on Triton.
VARIANTS = {"torch": frozenset(), "linear": frozenset({"linear"}), "rope_attention": frozenset({"rope_attention"}),
            "all": frozenset({"linear", "rope_attention"})}


def tiny_model(seed: int, hidden_size: int = 128):
    """tests/conftest.py's tiny_qwen2 (hidden 128: tests/test_engine_int4.py's int4_qwen2; hidden 32: the
    model of tests/test_engine_cuda.py's int8 test)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    return Qwen2ForCausalLM(Qwen2Config(vocab_size=97, hidden_size=hidden_size, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2,
                                        intermediate_size=2 * hidden_size, max_position_embeddings=256)).eval()


def prompts(device: torch.device) -> dict[str, torch.Tensor]:
    """20-token prompts: one drawn on the host, and (on a GPU) tests/test_engine_cuda.py's, drawn there."""
    drawn = {"host_seed_0": torch.randint(0, 97, (1, 20), generator=torch.Generator().manual_seed(0)).to(device)}
    if device.type == "cuda":
        drawn["tests_cuda_seed_0"] = torch.randint(0, 97, (1, 20), device=device,
                                                   generator=torch.Generator(device).manual_seed(0))
    return drawn


def compare(engine, reference, prompt: torch.Tensor, steps: int) -> dict:
    """Engine logits for the prompt, then one token at a time along the reference's greedy continuation,
    against the reference's logits for the same prefixes."""
    with torch.no_grad():
        continuation = reference.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=steps,
                                          do_sample=False, pad_token_id=0, top_p=None, top_k=None,
                                          temperature=None)[0]  # the mask: prompts may hold token 0
        expected = reference(continuation[None]).logits[0].float()  # [P + steps, V]
    # The prefill as plain decoding runs it (only the last position's logits: the lm-head on one row).
    last_only = engine.open_session(prompt.shape[1] + 1).forward(prompt[0], 1).float().clone()
    session = engine.open_session(continuation.shape[0] + 1)
    got = [session.forward(prompt[0], prompt.shape[1]).float().clone()]
    for i in range(prompt.shape[1], continuation.shape[0]):
        got.append(session.forward(continuation[i:i + 1], 1).float().clone())
    got = torch.cat(got)
    expected = expected[: got.shape[0]]
    top2 = expected.topk(2, dim=-1).values
    gaps = (top2[:, 0] - top2[:, 1])
    parted = (got.argmax(-1) != expected.argmax(-1)).nonzero().flatten().tolist()
    difference = (got - expected).abs().amax(-1)  # [positions]
    over = (difference > 1e-5).nonzero().flatten().tolist()
    first_token = float((last_only[-1] - expected[prompt.shape[1] - 1]).abs().max())
    return {"positions": got.shape[0], "max_abs_logit_difference": float(difference.max()),
            "last_only_prefill_max_abs_logit_difference": first_token,
            "first_position_over_1e-5": None if not over else {"position": over[0],
                                                                "difference": float(difference[over[0]])},
            "argmax_disagreements": [{"position": p, "reference_top2_gap": float(gaps[p])} for p in parted]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="model_dtype,int8,int4")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--max-seq-len", type=int, default=512)
    parser.add_argument("--hidden-size", type=int, default=128, help="32: the model of the tests' int8 engine test "
                        "(int4 needs 128)")
    parser.add_argument("--out", default="float32_agreement.json")
    args = parser.parse_args()
    from specdraft.engine import Engine
    from specdraft.engine import tuner as tuning
    from specdraft.engine.launch import pdl_supported
    from specdraft.engine.quant import dequantized_copy

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"command": "python " + " ".join(sys.argv), "device": str(device), "torch": torch.__version__,
               "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
               "programmatic_dependent_launch_supported": pdl_supported()}
    model = tiny_model(0, args.hidden_size).to(device)
    launch = tuning.current().launch
    all_families = launch.families
    started = time.perf_counter()
    for weights in args.weights.split(","):
        reference = dequantized_copy(model, weights)
        for name, families in VARIANTS.items():
            for prompt_name, prompt in prompts(device).items():
                launch.families = families
                try:
                    engine = Engine.from_hf(model, max_seq_len=args.max_seq_len, weights=weights)
                    results[f"{weights}_{name}_{prompt_name}"] = row = compare(engine, reference, prompt, args.steps)
                finally:
                    launch.families = all_families
                print(f"{weights:>5} {name:>15} {prompt_name:>17}: max |dlogit| {row['max_abs_logit_difference']:.3g}"
                      f" (last-only prefill {row['last_only_prefill_max_abs_logit_difference']:.3g}; first over 1e-5:"
                      f" {row['first_position_over_1e-5']}), argmax parts at {row['argmax_disagreements']}",
                      flush=True)
    results["triton_tuned"] = {str(k): None if c is None else c._asdict() for k, c in tuning.current().tuned_configs().items()}
    results["seconds"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
