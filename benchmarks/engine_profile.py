"""Where a decode step's time goes: every GPU kernel of the engine's steps, by kind, against the step's time.

    python benchmarks/engine_profile.py --shape seed --weights int8 --out engine_profile_int8.json

For the target's one-token step, its 6-token verification, the draft's one-token step and the draft's 5-token
proposal (batch 1, mid-generation after a 128-token prompt; random weights of the seed's shapes from
`engine_speed.py`), three figures each:

- `step_ms`: one call as decoding runs it (a CUDA-graph replay), timed over back-to-back calls;
- `kernels`: every kernel the profiler (CUPTI) sees in those replays, grouped by kind (matmul, attention,
  norm, RoPE + cache write, element-wise, copies...): launches per call and summed device milliseconds;
- `idle_ms` = step_ms - summed kernel time: the GPU waiting between kernels (launch latency and tails
  that no kernel's own duration counts).

With a few thousand launches a step, `kernels_per_call` times a few microseconds is the bound the table
in docs/performance.md explains. The same figures for eager steps (no graph: each launch paid by the host)
are recorded for comparison. With --prefill, each engine's prefill of the prompt as well: replayed from its
graph, run eagerly as tuned, and eagerly with every matmul of more than one tile of rows dequantizing its
weight for cuBLAS (the path the wide kernel replaces); `host_ms` there is the host's time to issue one
prefill, unsynchronised. Needs a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict

import torch

from engine_speed import SHAPES, build, copy_bandwidth, engine_bytes_per_step, per_call_ms, session_calls, sync

KINDS = (  # the first pattern a kernel's name matches gives its kind
    ("matmul, Triton", r"int8_linear|linear_kernel"),
    ("matmul, cuBLAS", r"gemv|gemm|cublas|cutlass|xmma|nvjet|splitKreduce|Kernel2"),
    ("attention", r"fmha|flash|attention|attn|efficient"),
    ("RoPE + cache write", r"rope"),
    ("norm", r"rms|norm"),
    ("argmax / reductions", r"reduce|argmax|arg_max|max_|sum"),
    ("copies and fills", r"Memcpy|Memset|copy|fill|cat|index|gather|scatter"),
    ("element-wise", r"elementwise|vectorized|silu|mul|add|unrolled|sin|cos"),
)


def kind_of(name: str) -> str:
    for kind, pattern in KINDS:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return kind
    return "other"


def profile_calls(fn, calls: int) -> dict:
    """Kernels of `calls` calls of fn: per call, launches and device ms by kind, and the costliest kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    sync(torch.device("cuda"))
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            fn()
        torch.cuda.synchronize()
    kernels = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    last_call = kernels[len(kernels) - len(kernels) // calls:]  # the last call's kernels, in launch order
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for event in kernels:
        ms = event.time_range.elapsed_us() / 1000
        for table, key in ((by_kind, kind_of(event.name)), (by_name, event.name)):
            table[key][0] += 1
            table[key][1] += ms
    per_call = {kind: {"launches": n / calls, "ms": ms / calls} for kind, (n, ms) in
                sorted(by_kind.items(), key=lambda item: -item[1][1])}
    top = sorted(by_name.items(), key=lambda item: -item[1][1])[:12]
    return {"kernels_per_call": sum(v["launches"] for v in per_call.values()),
            "kernel_ms_per_call": sum(v["ms"] for v in per_call.values()),
            "by_kind": per_call,
            "top_kernels": [{"name": name[:160], "launches_per_call": n / calls, "ms_per_call": ms / calls}
                            for name, (n, ms) in top],
            "one_call": [[e.name[:48], round(e.time_range.elapsed_us(), 2)] for e in last_call]}


def profile_prefill(engine, prompt_len: int, calls: int) -> dict:
    """A `prompt_len`-token prefill replayed from its graph; run eagerly as tuned; and eagerly with the wide
    matmuls dequantizing (the path the wide kernel replaces)."""
    import contextlib

    from specdraft.engine import tuner as tuning
    from specdraft.engine.linear_kernel import MAX_FAST_ROWS

    ids = torch.randint(1, 1000, (prompt_len,), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    runner = engine.session_runner()

    def prefill():
        engine.open_session(prompt_len + 1).forward(ids, 1)

    def measured(mode) -> dict:
        with mode:
            prefill()  # tunes, and captures the graph
            sync(torch.device("cuda"))
            started = time.perf_counter()
            prefill()
            host_ms = (time.perf_counter() - started) * 1000
            out = {"step_ms": per_call_ms(prefill, torch.device("cuda"), 3, calls), "host_ms": host_ms}
            out.update(profile_calls(prefill, calls))
        out["idle_ms"] = out["step_ms"] - out["kernel_ms_per_call"]
        return out

    result = {"graph": measured(contextlib.nullcontext()), "eager": measured(runner.eager())}
    tuned = tuning.current()
    dequantizing = tuning.KernelTuner(forced={"linear": lambda key: None if key[2] > MAX_FAST_ROWS
                                              else tuned.choices.get(key),
                                              "attention": lambda key: tuned.choices.get(key)}, launch=tuned.launch)
    with tuning.use(dequantizing):
        result["eager_wide_matmuls_dequantized"] = measured(runner.eager())
    for name, r in result.items():
        print(f"  prefill {prompt_len}, {name}: {r['step_ms']:.3f} ms ({r['kernels_per_call']:.0f} kernels, "
              f"{r['kernel_ms_per_call']:.3f} ms busy; host issues it in {r['host_ms']:.3f} ms)", flush=True)
    return result


def profile_engine(engine, wanted: list[str], prompt_len: int, calls: int, bytes_per_s: float) -> dict:
    floor_ms = engine_bytes_per_step(engine) / bytes_per_s * 1000
    out = {"weight_bytes_per_step": engine_bytes_per_step(engine), "bytes_floor_ms": floor_ms}
    for name, fn in session_calls(engine, prompt_len).items():
        if name not in wanted:
            continue
        fn()  # capture the graph (and tune kernels) before timing
        graph = {"step_ms": per_call_ms(fn, torch.device("cuda"), 5, calls)}
        graph.update(profile_calls(fn, calls))
        graph["idle_ms"] = graph["step_ms"] - graph["kernel_ms_per_call"]
        with engine.session_runner().eager():  # the same steps launched one kernel at a time by the host
            eager = {"step_ms": per_call_ms(fn, torch.device("cuda"), 3, max(2, calls // 4))}
            eager.update(profile_calls(fn, max(2, calls // 4)))
        out[name] = {"graph": graph, "eager": eager}
        print(f"  {name}: graph {graph['step_ms']:.3f} ms ({graph['kernels_per_call']:.0f} kernels, "
              f"{graph['kernel_ms_per_call']:.3f} ms busy, {graph['idle_ms']:.3f} ms idle); eager "
              f"{eager['step_ms']:.3f} ms; floor {floor_ms:.3f} ms", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="seed")
    parser.add_argument("--weights", default="model_dtype", help="engine weights, comma-separated: model_dtype,int8,int4")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--prefill", action="store_true", help="profile each engine's prefill as well")
    parser.add_argument("--steps", choices=["all", "none"], default="all", help="none: only the prefills")
    parser.add_argument("--out", default="engine_profile.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("engine_profile.py needs a CUDA device (the profile is of GPU kernels)")
    from specdraft.engine import Engine
    from specdraft.engine import tuner as tuning
    from specdraft.engine.launch import pdl_supported

    device, started = torch.device("cuda"), time.perf_counter()
    results = {"command": "python " + " ".join(sys.argv), "shape": args.shape, "gpu": torch.cuda.get_device_name(),
               "torch": torch.__version__, "prompt_len": args.prompt_len, "calls": args.calls,
               "programmatic_dependent_launch_supported": pdl_supported(),
               "copy_bandwidth_bytes_per_s": copy_bandwidth(device, 2 * 1024**3)}
    wanted = {"target": ["one_token_step", "verification_6"], "draft": ["one_token_step", "proposal_5"]}
    for role, seed in (("target", 0), ("draft", 1)):
        model = build(SHAPES[args.shape][role], torch.bfloat16, device, seed)
        for weights in args.weights.split(","):
            print(f"{role}, {weights}:", flush=True)
            engine = Engine.from_hf(model, max_seq_len=args.prompt_len + 32, max_batch_size=1, weights=weights)
            results[f"{role}_{weights}"] = profile_engine(engine, wanted[role] if args.steps == "all" else [],
                                                          args.prompt_len, args.calls,
                                                          results["copy_bandwidth_bytes_per_s"])
            if args.prefill:
                results[f"{role}_{weights}"]["prefill"] = profile_prefill(engine, args.prompt_len,
                                                                          max(2, args.calls // 4))
            del engine
            torch.cuda.empty_cache()
        del model
        torch.cuda.empty_cache()
    results["triton_tuned"] = {str(k): None if c is None else c._asdict()
                               for k, c in tuning.current().tuned_configs().items()}
    results["seconds"] = time.perf_counter() - started
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
