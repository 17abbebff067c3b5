"""One decoder matrix at a time on a GPU: what each way of multiplying a few rows by it costs, against the
time to read its weights once. The profile behind docs/performance.md's decode-step figures.

    python benchmarks/linear_kernels.py --out linear_kernels.json
    python benchmarks/linear_kernels.py --int4 --out linear_kernels_int4.json   # the int4 kernel as well
    python benchmarks/linear_kernels.py --rows 96,128 --out linear_kernels_wide.json   # verification, prefill

For each matrix of the seed's 14B target and 0.5B draft (fused qkv, o, fused gate/up, down, lm-head) and
M = 1 and 6 rows (--rows): cuBLAS on bf16 weights (`F.linear`), the engine's Triton int8 kernel
(`specdraft.engine.linear_kernel.fused_linear`, as tuned), the int8 reference path (dequantize, then cuBLAS), and
`torch.ops.aten._weight_int8pack_mm` where this torch has it for CUDA; with --int4, the same Triton kernel
on packed int4 weights (a scale per 128 input columns) too. Times are CUDA-graph replays of
many calls over enough weight copies that no call finds its weights in L2 (median of 5 replays), so they
include each kernel's launch and tail as a decode step does. Above 16 rows the floor is the larger of reading
the weight once and its multiply at the bf16 matmul rate cuBLAS reaches on 8192^3 in the same run.
Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn.functional as F

SHAPES = {  # (N, K) of each matrix a decode step reads, and how many of it a step reads
    "target": {"qkv": (7168, 5120, 48), "o": (5120, 5120, 48), "gate_up": (27648, 5120, 48),
               "down": (5120, 13824, 48), "lm_head": (152064, 5120, 1)},
    "draft": {"qkv": (1152, 896, 24), "o": (896, 896, 24), "gate_up": (9728, 896, 24), "down": (896, 4864, 24),
              "lm_head": (152064, 896, 1)},
}


def replay_us(fn, copies: int, calls: int = 64) -> float:
    """Microseconds per call of fn(i), i cycling over `copies` weight sets, from a captured graph."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for i in range(copies):
            fn(i)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for j in range(calls):
            fn(j % copies)
    times = []
    for _ in range(6):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) * 1000 / calls)
    return statistics.median(times[1:])


def host_us(fn, copies: int, calls: int = 64) -> float:
    """Microseconds the host takes to issue one call of fn(i) eagerly (no graph), unsynchronised."""
    for i in range(copies):
        fn(i)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for j in range(calls):
        fn(j % copies)
    host = (time.perf_counter() - started) * 1e6 / calls
    torch.cuda.synchronize()
    return host


def sweep_configs():
    from specdraft.engine.linear_kernel import Config

    dot = [(64, 256, 1, 4, 4), (128, 128, 1, 8, 4), (128, 256, 1, 8, 3), (32, 256, 1, 4, 4), (32, 256, 2, 4, 4),
           (32, 256, 4, 4, 4), (64, 256, 2, 4, 4), (64, 128, 4, 4, 5), (16, 256, 8, 4, 3), (16, 512, 4, 4, 3)]
    gemv = [(8, 512, 1, 4, 3), (16, 512, 1, 4, 3), (16, 256, 1, 4, 4), (32, 256, 1, 8, 4), (32, 512, 1, 8, 3),
            (8, 512, 4, 4, 3), (16, 512, 2, 4, 3), (8, 1024, 1, 4, 2), (4, 1024, 1, 4, 3), (64, 128, 1, 8, 4)]
    return [Config(*c) for c in dot] + [Config(*c, dot=False) for c in gemv]


FORMS = {  # how the engine calls each matrix: what `layer_step` folds into it
    "qkv": dict(norm=True, bias=True), "o": dict(residual=True), "gate_up": dict(norm=True, glu=True),
    "down": dict(residual=True), "lm_head": dict(norm=True),
}


def forced(config, x, q, s, norm=None, bias=None, residual=None, glu=False):
    """fused_linear with `config` instead of the tuned choice."""
    from specdraft.engine.linear_kernel import launch_linear

    n = q.shape[0] // 2 if glu else q.shape[0]
    out = torch.empty((x.shape[0], n), dtype=x.dtype, device=x.device)
    launch_linear(config, x, q, s, bias, residual, norm, 1e-6, glu, out)
    return out


def sweep(call, rows: int, copies: int) -> tuple[str, dict]:
    """Microseconds of call(config, i) for every configuration of the sweep that takes `rows` rows (or why it
    did not run), and the fastest one."""
    times = {}
    for config in sweep_configs():
        if config.dot or rows == 1:
            try:
                times[str(tuple(config))] = replay_us(lambda i: call(config, i), copies)
            except Exception as e:  # noqa: BLE001  a configuration this GPU rejects
                times[str(tuple(config))] = f"failed: {type(e).__name__}"
    timed = {c: us for c, us in times.items() if isinstance(us, float)}
    return min(timed, key=timed.get), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="linear_kernels.json")
    parser.add_argument("--sweep", action="store_true", help="also time every configuration of the sweep")
    parser.add_argument("--rows", default="1,6", help="row counts M, comma-separated")
    parser.add_argument("--int4", action="store_true", help="also time the Triton kernel on int4 weights (with "
                        "--sweep: every configuration of the sweep for them too)")
    args = parser.parse_args()

    from specdraft.engine.linear_kernel import fused_linear as int8_linear
    from specdraft.engine.quant import GROUP, dequantize, dequantize_int4, quantize_int4, quantize_int8

    device = torch.device("cuda")
    src = torch.empty(2 * 1024**3 // 2, dtype=torch.bfloat16, device=device).uniform_()
    dst = torch.empty_like(src)
    for _ in range(20):  # bring the clocks up from idle before timing
        dst.copy_(src)
    copy_us = replay_us(lambda i: dst.copy_(src), 1, calls=8)
    bandwidth = 2 * src.numel() * 2 / (copy_us * 1e-6)
    del src, dst
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    matmul_rate = 2 * 8192**3 / (replay_us(lambda i: a @ a, 1, calls=8) * 1e-6)
    del a
    has_pack = hasattr(torch.ops.aten, "_weight_int8pack_mm")
    results = {"command": "python " + " ".join(sys.argv), "gpu": torch.cuda.get_device_name(device),
               "torch": torch.__version__, "copy_bandwidth_bytes_per_s": bandwidth,
               "bf16_matmul_flops_per_s": matmul_rate, "rows": {}}

    def say(line: str) -> None:  # printed as it comes: a run cut short still shows what it measured
        print(line, flush=True)

    def save() -> None:  # after each row too, so a run cut short keeps what it measured
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    for model, shapes in SHAPES.items():
        step = {}
        for name, (n, k, count) in shapes.items():
            copies = max(2, min(32, math.ceil(512 * 1024**2 / (n * k))))  # > 8x L2 in int8
            g = torch.Generator(device=device).manual_seed(0)
            bf16 = [torch.randn(n, k, device=device, dtype=torch.bfloat16, generator=g) / 30 for _ in range(copies)]
            q, s = zip(*(quantize_int8(w, torch.bfloat16) for w in bf16))
            if args.int4:
                q4, s4 = zip(*(quantize_int4(w, torch.bfloat16) for w in bf16))
            for m in [int(r) for r in args.rows.split(",")]:
                x = torch.randn(m, k, device=device, dtype=torch.bfloat16, generator=g)
                compute_us = 2 * m * n * k / matmul_rate * 1e6
                row = {"N": n, "K": k, "M": m, "compute_floor_us": compute_us,
                       "bf16_floor_us": max(n * k * 2 / bandwidth * 1e6, compute_us),
                       "int8_floor_us": max(n * k / bandwidth * 1e6, compute_us),
                       "cublas_bf16_us": replay_us(lambda i: F.linear(x, bf16[i]), copies),
                       "triton_int8_us": replay_us(lambda i: int8_linear(x, q[i], s[i]), copies),
                       "triton_int8_host_us": host_us(lambda i: int8_linear(x, q[i], s[i]), copies)}
                if n * k <= 30e6 or m > 16:  # it materialises bf16 weights: the path many rows replace
                    row["dequant_then_cublas_us"] = replay_us(
                        lambda i: F.linear(x, dequantize(q[i], s[i], x.dtype)), copies)
                if has_pack:
                    try:
                        row["weight_int8pack_mm_us"] = replay_us(
                            lambda i: torch.ops.aten._weight_int8pack_mm(x, q[i], s[i]), copies)
                    except (RuntimeError, NotImplementedError) as e:
                        row["weight_int8pack_mm_us"] = f"unavailable: {str(e).splitlines()[0][:120]}"
                if args.sweep:
                    best, row["sweep_us"] = sweep(lambda config, i: forced(config, x, q[i], s[i]), m, copies)
                    row["sweep_best"], row["sweep_best_us"] = best, row["sweep_us"][best]
                    # The matrix as the engine calls it (norm, bias, GLU, residual folded in), every configuration.
                    form = FORMS[name]
                    extra = dict(norm=torch.rand(k, device=device, dtype=x.dtype) + 0.5 if form.get("norm") else None,
                                 bias=torch.randn(n, device=device, dtype=x.dtype) if form.get("bias") else None,
                                 residual=(torch.randn(m, n, device=device, dtype=x.dtype) if form.get("residual")
                                           else None), glu=form.get("glu", False))
                    row["fused_form"] = {key: v is not None and v is not False for key, v in extra.items()}
                    fbest, row["fused_sweep_us"] = sweep(lambda config, i: forced(config, x, q[i], s[i], **extra), m,
                                                         copies)
                    row["fused_sweep_best"], row["fused_sweep_best_us"] = fbest, row["fused_sweep_us"][fbest]
                    say(f"   sweep best {best}: {row['sweep_best_us']:.1f} us; as the engine calls it "
                        f"{fbest}: {row['fused_sweep_best_us']:.1f} us")
                if args.int4:  # packed bytes plus one bf16 scale per GROUP weights
                    row["int4_floor_us"] = max((n * k // 2 + n * k // GROUP * 2) / bandwidth * 1e6, compute_us)
                    row["triton_int4_us"] = replay_us(lambda i: int8_linear(x, q4[i], s4[i]), copies)
                    out4 = int8_linear(x, q4[0], s4[0]).float()
                    ref4 = F.linear(x.float(), dequantize_int4(q4[0], s4[0], x.dtype).float())
                    row["triton_int4_rel_error"] = float((out4 - ref4).norm() / ref4.norm())
                    row["triton_fraction_of_int4_floor"] = row["int4_floor_us"] / row["triton_int4_us"]
                    if args.sweep:
                        best4, row["int4_sweep_us"] = sweep(lambda config, i: forced(config, x, q4[i], s4[i]), m,
                                                            copies)
                        row["int4_sweep_best"], row["int4_sweep_best_us"] = best4, row["int4_sweep_us"][best4]
                out, ref = int8_linear(x, q[0], s[0]).float(), F.linear(x.float(), q[0].float() * s[0].float()[:, None])
                row["triton_rel_error"] = float((out - ref).norm() / ref.norm())
                row["cublas_fraction_of_bf16_floor"] = row["bf16_floor_us"] / row["cublas_bf16_us"]
                row["triton_fraction_of_int8_floor"] = row["int8_floor_us"] / row["triton_int8_us"]
                results["rows"][f"{model}.{name}.M{m}"] = row
                step.setdefault(m, [0.0, 0.0, 0.0, 0.0])
                step[m][0] += count * row["cublas_bf16_us"]
                step[m][1] += count * row["triton_int8_us"]
                step[m][2] += count * row.get("triton_int4_us", 0.0)
                step[m][3] += count * row.get("dequant_then_cublas_us", float("nan"))
                say(f"{model:6} {name:8} M={m:<2} N={n:<6} K={k:<5} cublas {row['cublas_bf16_us']:8.1f} us "
                    f"({row['cublas_fraction_of_bf16_floor']:.0%})  "
                    f"triton-int8 {row['triton_int8_us']:8.1f} us "
                    f"({row['triton_fraction_of_int8_floor']:.0%}, host {row['triton_int8_host_us']:.0f} us)  "
                    f"err {row['triton_rel_error']:.1e}"
                    + (f"  dequant+cublas {row['dequant_then_cublas_us']:8.1f} us"
                       if "dequant_then_cublas_us" in row else ""))
                save()
                if args.int4:
                    say(f"{'':40}triton-int4 {row['triton_int4_us']:8.1f} us "
                        f"({row['triton_fraction_of_int4_floor']:.0%})  "
                        f"err {row['triton_int4_rel_error']:.1e}")
            del bf16, q, s
            if args.int4:
                del q4, s4
        for m, (cublas, triton_int8, triton_int4, dequant) in step.items():
            results[f"{model}_matmuls_M{m}_cublas_bf16_ms"] = cublas / 1000
            if not math.isnan(dequant):  # timed for every matrix
                results[f"{model}_matmuls_M{m}_dequant_then_cublas_ms"] = dequant / 1000
            results[f"{model}_matmuls_M{m}_triton_int8_ms"] = triton_int8 / 1000
            if args.int4:
                results[f"{model}_matmuls_M{m}_triton_int4_ms"] = triton_int4 / 1000
            say(f"{model} step matmuls M={m}: cublas bf16 {cublas / 1000:.3f} ms, triton int8 "
                f"{triton_int8 / 1000:.3f} ms" + (f", triton int4 {triton_int4 / 1000:.3f} ms" if args.int4 else "")
                + ("" if math.isnan(dequant) else f", dequant+cublas {dequant / 1000:.3f} ms"))
    save()
    print(f"copy bandwidth {bandwidth / 1e12:.2f} TB/s; _weight_int8pack_mm present: {has_pack}")


if __name__ == "__main__":
    main()
