"""A decode step's attention on a GPU: SDPA as `decoder.layer_step` calls it against every candidate
configuration of the split-KV Triton kernel (`specdraft.engine.attention.decode_attention`) and the
configuration its tuner chooses.

    PYTHONPATH=. python benchmarks/attention_kernels.py --out attention_kernels.json

For the attention shapes of the seed's models and Qwen3's (KV heads, query heads per KV head, head_dim),
T = 1 and 6 tokens a step (R = T * group query rows per KV head), kv_len 256 to 2048 attended cache columns,
batch 1 and 16, in bf16: microseconds per call from CUDA-graph replays of many calls (the engine's steps are
graph replays, so launch and tail are included), each call on another copy of the caches so that no call
finds its keys and values in L2 (a decode step streams the layer's weights through L2 between two
attentions). Each candidate's output is checked against SDPA's. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

# name: (KV heads, query heads per KV head, head_dim, layers); from engine_speed.py's SHAPES.
MODELS = {
    "qwen2.5-14b": (8, 5, 128, 48),
    "qwen2.5-0.5b": (2, 7, 64, 24),
    "qwen3-14b": (8, 5, 128, 40),
    "qwen3-0.6b": (8, 2, 128, 28),
}
L2_BYTES = 50 * 1024**2  # an H100's / H200's


def engine_mask(B: int, T: int, group: int, kv_len: int, device: torch.device) -> torch.Tensor:
    """An additive mask as `Decoder.forward` builds it, [B, 1, T * group, kv_len]: row b's T tokens end at
    its own column (rows of ragged lengths, each ending inside the last 256-column bucket)."""
    from specdraft.engine.decoder import attention_mask

    ends = kv_len - 1 - (torch.arange(B, device=device) * 37) % min(kv_len - T, 200)  # [B] last column
    columns = ends[:, None] - T + 1 + torch.arange(T, device=device)  # [B, T]
    return attention_mask(columns, torch.zeros(B, dtype=torch.long, device=device), kv_len, group, torch.bfloat16)


def measure(nkv: int, group: int, head_dim: int, B: int, T: int, kv_len: int, max_seq_len: int,
            device: torch.device) -> dict:
    """One attention shape: SDPA, every candidate, the tuned choice (microseconds per call), errors."""
    from linear_kernels import replay_us

    from specdraft.engine import attention
    from specdraft.engine import tuner as tuning

    R = T * group
    attended = 2 * B * nkv * kv_len * head_dim * 2  # bytes of keys and values read, bf16
    copies = max(2, min(1024, math.ceil(4 * L2_BYTES / attended)))
    calls = max(64, copies)
    g = torch.Generator(device=device).manual_seed(0)
    # Caches of max_seq_len columns, of which the first kv_len are attended: the engine's layout.
    caches = [(torch.randn(B, nkv, max_seq_len, head_dim, device=device, dtype=torch.bfloat16, generator=g),
               torch.randn(B, nkv, max_seq_len, head_dim, device=device, dtype=torch.bfloat16, generator=g))
              for _ in range(copies)]
    q = torch.randn(B, nkv, R, head_dim, device=device, dtype=torch.bfloat16, generator=g)
    mask = engine_mask(B, T, group, kv_len, device)
    out = torch.empty_like(q)
    reference = F.scaled_dot_product_attention(q.float(), caches[0][0][:, :, :kv_len].float(),
                                               caches[0][1][:, :, :kv_len].float(), attn_mask=mask.float())

    def sdpa(i: int) -> torch.Tensor:  # as layer_step calls it
        k, v = caches[i]
        return F.scaled_dot_product_attention(q, k[:B, :, :kv_len], v[:B, :, :kv_len], attn_mask=mask)

    def tuned(i: int) -> torch.Tensor:  # as layer_step calls it: the kernel, or SDPA where it declines
        k, v = caches[i]
        attn = attention.decode_attention(q, k, v, mask)
        return attn if attn is not None else sdpa(i)

    row = {"B": B, "T": T, "R": R, "kv_len": kv_len, "max_seq_len": max_seq_len, "kv_bytes": attended,
           "copies": copies,
           "sdpa_us": replay_us(sdpa, copies, calls), "candidates_us": {}, "max_abs_error": {}}
    for config in attention.attention_candidates_for(kv_len):
        name = str(tuple(config))
        try:
            attention.launch_attention(config, q, *caches[0], mask, out)
            row["max_abs_error"][name] = float((out.float() - reference).abs().max())
            row["candidates_us"][name] = replay_us(
                lambda i: attention.launch_attention(config, q, *caches[i], mask, out), copies, calls)
        except Exception as e:  # noqa: BLE001  a configuration this GPU rejects (the tuner skips it too)
            row["candidates_us"][name] = f"failed: {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    timed = {c: us for c, us in row["candidates_us"].items() if isinstance(us, float)}
    if timed:
        row["best_candidate"] = min(timed, key=timed.get)
        row["best_candidate_us"] = timed[row["best_candidate"]]
    tuned(0)  # tunes this shape (outside the graph, as the engine's warm-up does)
    choice = tuning.current().tuned_configs()[("decode_attention", B, nkv, R, head_dim, kv_len, q.dtype)]
    row["tuned_choice"] = "sdpa" if choice is None else str(tuple(choice))
    row["tuned_us"] = replay_us(tuned, copies, calls)
    del caches
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="attention_kernels.json")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {list(MODELS)}")
    parser.add_argument("--tokens", default="1,6", help="tokens per step (T)")
    parser.add_argument("--kv-lens", default="256,512,1024,2048",
                        help="attended columns; the caches hold the largest of them")
    parser.add_argument("--batches", default="1,16")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("benchmarks/attention_kernels.py times CUDA kernels: run it on a machine with a CUDA device")
    models = args.models.split(",")
    if unknown := [m for m in models if m not in MODELS]:
        sys.exit(f"--models: unknown {unknown}; choose from {list(MODELS)}")
    import triton

    from specdraft.engine import tuner as tuning
    from specdraft.engine.attention import ATTENTION_CANDIDATES
    from specdraft.engine.launch import available

    if not available():
        sys.exit("the engine's Triton kernels are not available here (Triton missing or SPECDRAFT_NO_TRITON set)")
    device = torch.device("cuda")
    results = {"command": "python " + " ".join(sys.argv), "gpu": torch.cuda.get_device_name(device),
               "torch": torch.__version__, "triton": triton.__version__, "dtype": "bfloat16",
               "candidates": [c._asdict() for c in ATTENTION_CANDIDATES], "shapes": {}}
    kv_lens = [int(s) for s in args.kv_lens.split(",")]
    measured: dict[tuple, dict] = {}  # the same attention shape in two models is measured once
    lines = []
    for model in models:
        nkv, group, head_dim, layers = MODELS[model]
        for B in (int(b) for b in args.batches.split(",")):
            for T in (int(t) for t in args.tokens.split(",")):
                for kv_len in kv_lens:
                    shape = (nkv, group, head_dim, B, T, kv_len)
                    if shape not in measured:
                        measured[shape] = measure(*shape, max(kv_lens), device)
                    row = dict(measured[shape], model=model, nkv=nkv, group=group, head_dim=head_dim, layers=layers)
                    row["saved_per_step_us"] = layers * (row["sdpa_us"] - row["tuned_us"])
                    results["shapes"][f"{model}.B{B}.T{T}.kv{kv_len}"] = row
                    lines.append(f"{model:13} B={B:<2} T={T} R={row['R']:<3} kv={kv_len:<5} sdpa {row['sdpa_us']:6.1f} us"
                                 f"  best {row.get('best_candidate_us', float('nan')):6.1f} us "
                                 f"{row.get('best_candidate', '-'):18}  tuned {row['tuned_us']:6.1f} us "
                                 f"({row['tuned_choice']})  x{layers} layers: {row['saved_per_step_us']:+8.1f} us/step")
                    print(lines[-1], flush=True)
    results["failures"] = {str(k): v for k, v in tuning.current().failures.items()}
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
