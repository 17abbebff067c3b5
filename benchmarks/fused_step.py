"""The draft's fused one-token step against its layer-by-layer step, on a GPU, in one process.

    python benchmarks/fused_step.py --shape seed --weights int8,model_dtype --out fused_step.json

For each weight format: ms per draft token inside a 5-token greedy proposal (one CUDA-graph replay, mid-
generation after a 128-token prompt, random weights of the shape's draft), kernels per token (CUPTI), the
bytes a token reads over that time (achieved bandwidth) and the bytes floor at this run's copy bandwidth;
for the layer-by-layer step, the fused step under each of CONFIGS, and the fused step launched one phase at
a time (no grid barrier): the difference is what the barriers and launches cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import torch

from engine_profile import profile_calls
from engine_speed import SHAPES, build, copy_bandwidth, engine_bytes_per_step, per_call_ms, session_calls

CALLS = 20  # proposals back to back between two synchronisations
# Kernels counted (CUPTI); those launched one phase at a time also timed a phase at a time.
PROFILED = ("default", "one_launch_a_phase", "loads_ahead", "loads_ahead_one_launch_a_phase")
PHASE_NAMES = ("A_norm_qkv", "B_rope_cache_attention", "C_o_residual", "D_norm_gate_up", "E_down_residual")


def candidate_configs():
    from specdraft.engine.fused_step import GPU_CONFIG, MATRICES

    but_down = tuple(m for m in MATRICES if m != "down")

    return {"default": GPU_CONFIG, "tile_8192": GPU_CONFIG._replace(tile_elems=8192),
            "tile_32768": GPU_CONFIG._replace(tile_elems=32768),
            "four_warps_tile_8192": GPU_CONFIG._replace(tile_elems=8192, num_warps=4),
            "head_ahead_8": GPU_CONFIG._replace(head_ahead=8), "head_ahead_0": GPU_CONFIG._replace(head_ahead=0),
            "max_block_k_1024": GPU_CONFIG._replace(max_block_k=1024),
            "no_prefetch": GPU_CONFIG._replace(prefetch=False),
            "one_launch_a_phase": GPU_CONFIG._replace(barrier=False),
            "loads_ahead": GPU_CONFIG._replace(loads_ahead=MATRICES),
            "loads_ahead_but_down": GPU_CONFIG._replace(loads_ahead=but_down),
            "loads_ahead_tile_8192": GPU_CONFIG._replace(loads_ahead=MATRICES, tile_elems=8192),
            "loads_ahead_one_launch_a_phase": GPU_CONFIG._replace(loads_ahead=MATRICES, barrier=False)}


def measure(engine, prompt_len: int, bandwidth: float, profile: bool) -> dict:
    proposal = session_calls(engine, prompt_len)["proposal_5"]
    proposal()  # captures the graph (and compiles) before timing
    out = {"draft_token_ms": per_call_ms(proposal, torch.device("cuda"), 5, CALLS) / 5}
    out["bytes_per_token"] = engine_bytes_per_step(engine)
    out["achieved_bytes_per_s"] = out["bytes_per_token"] / (out["draft_token_ms"] / 1000)
    out["fraction_of_floor"] = out["bytes_per_token"] / bandwidth / (out["draft_token_ms"] / 1000)
    if profile:
        kernels = profile_calls(proposal, CALLS)
        out["kernels_per_token"] = kernels["kernels_per_call"] / 5
        out["kernel_ms_per_token"] = kernels["kernel_ms_per_call"] / 5
        out["by_kind_per_proposal"] = kernels["by_kind"]
        out["top_kernels_per_proposal"] = kernels["top_kernels"][:6]
        out["one_call"] = kernels["one_call"]
    return out


def phase_bytes(decoder, kv_len: int) -> dict[str, int]:
    """Bytes one layer's phase (and the lm-head) reads from weights and cache, as the floor of its time."""
    st, s = decoder.stacked, decoder.shape
    size = lambda *names: sum(st[n][0].numel() * st[n].element_size() for n in names if n in st)  # noqa: E731
    lm = sum(t.numel() * t.element_size() for t in (decoder.lm_head.weight, getattr(decoder, "lm_head_scale", None))
             if t is not None)
    cache = 2 * kv_len * s.num_kv_heads * s.head_dim * decoder.embed.weight.element_size()
    return {"A_norm_qkv": size("qkv.weight", "qkv_scale", "qkv.bias", "input_norm"),
            "B_rope_cache_attention": cache + size("qk_norm"), "C_o_residual": size("o.weight", "o_scale"),
            "D_norm_gate_up": size("gate_up.weight", "gate_up_scale", "post_norm"),
            "E_down_residual": size("down.weight", "down_scale"), "lm_head_argmax": lm}


def phase_profile(one_call: list, decoder, prompt_len: int, bandwidth: float) -> dict:
    """Per phase of the fused step launched one phase at a time: µs a launch (mean over layers and the
    proposal's tokens), the bytes it reads, its achieved bandwidth and fraction of the copy floor."""
    phases = PHASE_NAMES * decoder.shape.num_layers
    # A 5-token proposal feeds 6 tokens: the first two in one call, the lm-head after the second only.
    expected = [*phases, *[*phases, "lm_head_argmax"] * 5]
    launches = [us for name, us in one_call if name.startswith("fused_step_kernel")]
    if len(launches) != len(expected):
        return {"error": f"{len(launches)} fused launches in a proposal, {len(expected)} expected"}
    times: dict[str, list[float]] = {}
    for name, us in zip(expected, launches):
        times.setdefault(name, []).append(us)
    nbytes = phase_bytes(decoder, prompt_len + 3)
    out = {}
    for name, values in times.items():
        us = sum(values) / len(values)
        out[name] = {"launches": len(values), "us_per_launch": us, "bytes": nbytes[name],
                     "achieved_bytes_per_s": nbytes[name] / (us * 1e-6),
                     "fraction_of_floor": nbytes[name] / bandwidth / (us * 1e-6)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="seed")
    parser.add_argument("--weights", default="int8,model_dtype", help="comma-separated: model_dtype,int8")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--configs", default="all", help="comma-separated names of CONFIGS, or all, or default")
    parser.add_argument("--out", default="fused_step.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("fused_step.py needs a CUDA device")
    from specdraft.engine import Engine, fused_step
    from specdraft.engine import tuner as tuning
    from specdraft.engine.launch import DEFAULT_FAMILIES

    device, started = torch.device("cuda"), time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results = {"command": "python " + " ".join(sys.argv), "commit": commit or None, "shape": args.shape,
               "gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "prompt_len": args.prompt_len,
               "copy_bandwidth_bytes_per_s": copy_bandwidth(device, 2 * 1024**3)}
    bandwidth = results["copy_bandwidth_bytes_per_s"]
    configs = candidate_configs()
    wanted = list(configs) if args.configs == "all" else args.configs.split(",")
    model = build(SHAPES[args.shape]["draft"], torch.bfloat16, device, seed=1)
    launch = tuning.current().launch
    for weights in args.weights.split(","):
        engine = Engine.from_hf(model, max_seq_len=args.prompt_len + 32, max_batch_size=1, weights=weights)
        decoder, row = engine.decoder, {}
        launch.families = DEFAULT_FAMILIES
        row["layer_by_layer"] = measure(engine, args.prompt_len, bandwidth, profile=True)
        launch.families = DEFAULT_FAMILIES | {"fused_step"}
        print(f"{weights}, layer by layer: {row['layer_by_layer']['draft_token_ms']:.4f} ms a token", flush=True)
        for name in wanted:
            decoder.fused_step = fused_step.FusedStep(decoder, configs[name])
            fresh = Engine(decoder, max_seq_len=args.prompt_len + 32, max_batch_size=1)  # graphs of its own
            try:
                row[name] = measure(fresh, args.prompt_len, bandwidth, profile=name in PROFILED)
                if name.endswith("one_launch_a_phase") and "one_call" in row[name]:
                    row[name]["phases"] = phase_profile(row[name].pop("one_call"), decoder, args.prompt_len, bandwidth)
                failed = [v for k, v in tuning.current().failures.items()
                          if k[0] == "fused_step" and k[-1] == configs[name]]
                if failed:  # the proposal fell back to the layer-by-layer step: its time is not the fused one's
                    row[name] = {"error": failed[0]}
            except Exception as e:  # noqa: BLE001 - a configuration this Triton rejects is reported, not fatal
                row[name] = {"error": f"{type(e).__name__}: {e}"[:400]}
            print(f"{weights}, fused {name}: {row[name]}", flush=True)
            del fresh
        for measured in row.values():
            measured.pop("one_call", None)
        results[weights] = row
        results["failures"] = {str(k): v for k, v in tuning.current().failures.items()}
        with open(args.out, "w") as f:  # after each format: a later failure keeps what was measured
            json.dump(results, f, indent=1)
        del engine, decoder
        torch.cuda.empty_cache()
    results["seconds"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
